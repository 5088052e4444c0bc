"""Result files are replaced whole: a crash or a full disk while writing leaves the earlier file
as it was, and no temporary file behind (lit_rev.report.atomic_open)."""

import json

import matplotlib.pyplot as plt
import pytest

import lit_rev.report as report
from lit_rev.report import atomic_open, save_figure, write_report


def files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_a_report_that_fails_half_written_leaves_the_earlier_one(tmp_path, monkeypatch):
    write_report([{"a": 1.0}], tmp_path, "table")
    before = files(tmp_path)

    def dump_half(document, f, **kwargs):
        f.write('{"meta": {')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_half)
    with pytest.raises(OSError, match="No space left"):
        write_report([{"a": 2.0}], tmp_path, "table")
    assert files(tmp_path) == before
    assert json.loads((tmp_path / "table.json").read_text())["rows"] == [{"a": 1.0}]


def test_a_figure_that_fails_half_written_leaves_the_earlier_one(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path, "plot")
    before = files(tmp_path)

    class Broken:
        def savefig(self, f, **kwargs):
            f.write(b"\x89PNG half")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_figure(Broken(), tmp_path, "plot")
    assert files(tmp_path) == before


def test_atomic_open_replaces_the_file_only_when_done(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_open(path) as f:
        f.write("new")
        assert path.read_text() == "old"  # not yet: the new text is in a temporary file
    assert path.read_text() == "new" and files(tmp_path).keys() == {"out.txt"}
    monkeypatch.setattr(
        report.os, "replace", lambda *args: (_ for _ in ()).throw(OSError(5, "I/O"))
    )
    with pytest.raises(OSError), atomic_open(path) as f:
        f.write("newer")
    assert path.read_text() == "new" and files(tmp_path).keys() == {"out.txt"}

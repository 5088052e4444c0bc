import json
from pathlib import Path

import pytest

from lit_rev.result_files import (
    ResultError,
    depends_digest,
    differences,
    is_stale,
    lookup,
    provenance,
    read_result,
    render,
    same_setting,
    write_result,
)


def make_result(root: Path, name="demo", values=None, depends=("code",)) -> dict:
    (root / "code").mkdir(exist_ok=True)
    (root / "code" / "model.py").write_text("x = 1\n")
    document = {
        "name": name,
        "title": "a demo",
        "kind": "quick",
        "values": values
        if values is not None
        else {
            "rows": [
                {"set": "a", "auroc": 0.71234, "n": 1000},
                {"set": "b", "auroc": 0.25, "n": 5},
            ],
            "n": 3,
        },
        "tolerance": 0.01,
        "depends": list(depends),
        "depends_digest": depends_digest(root, depends),
        "provenance": provenance(root, ["python", "-m", "demo"], threads=1, seeds=[0], wall_s=62),
    }
    write_result(root / "results" / f"{name}.json", document)
    return document


def test_a_table_renders_with_its_provenance(tmp_path):
    make_result(tmp_path)
    text = (
        "before\n<!-- result demo table=rows columns=set,n,auroc:AUROC fmt=.3f -->\nold\n"
        "<!-- /result -->\n"
    )
    out = render(text, tmp_path / "results", tmp_path)
    assert "| set | n | AUROC |" in out
    assert "| a | 1000 | 0.712 |" in out and "| b | 5 | 0.250 |" in out
    assert "`python -m demo`" in out and "1 torch thread on" in out and "1 min 2 s wall" in out
    assert "Stale" not in out
    assert "old" not in out
    # rendering is idempotent: a rendered document is a fixed point
    assert render(out, tmp_path / "results", tmp_path) == out


def test_an_inline_value_picks_a_row_by_its_key(tmp_path):
    make_result(tmp_path)
    text = "AUROC <!-- result demo value=rows[set=a].auroc fmt=.2f -->0.99<!-- /result --> here"
    out = render(text, tmp_path / "results", tmp_path)
    assert (
        out == "AUROC <!-- result demo value=rows[set=a].auroc fmt=.2f -->0.71<!-- /result --> here"
    )


def test_a_changed_dependency_marks_the_table_stale(tmp_path):
    document = make_result(tmp_path)
    assert not is_stale(document, tmp_path)
    (tmp_path / "code" / "model.py").write_text("x = 2\n")
    assert is_stale(document, tmp_path)
    text = "<!-- result demo table=rows -->\n<!-- /result -->"
    assert "**Stale:**" in render(text, tmp_path / "results", tmp_path)


def test_pycache_does_not_change_the_digest(tmp_path):
    document = make_result(tmp_path)
    (tmp_path / "code" / "__pycache__").mkdir()
    (tmp_path / "code" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    assert not is_stale(document, tmp_path)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("<!-- result nothere value=n -->x<!-- /result -->", "does not exist"),
        ("<!-- result demo value=missing -->x<!-- /result -->", "no field 'missing'"),
        ("<!-- result demo value=rows[set=z].auroc -->x<!-- /result -->", "0 rows with set=z"),
        ("<!-- result demo -->x<!-- /result -->", "exactly one of"),
        ("<!-- result demo value -->x<!-- /result -->", "not key=value"),
        ("<!-- result demo table=n -->x<!-- /result -->", "not a list of rows"),
    ],
)
def test_a_bad_marker_names_the_problem(tmp_path, marker, message):
    make_result(tmp_path)
    with pytest.raises(ResultError, match=message):
        render(marker, tmp_path / "results", tmp_path, where="README.md")


def test_lookup_walks_lists_and_dicts():
    values = {"a": [{"k": "x", "v": [1, 2]}]}
    assert lookup(values, "a[k=x].v.1") == 2
    assert lookup(values, "a.0.k") == "x"


def test_differences_are_exact_without_tolerance_and_loose_with_it():
    old = {"rows": [{"a": 0.5, "s": "x"}], "n": 3}
    new = {"rows": [{"a": 0.5004, "s": "x"}], "n": 3}
    assert differences(old, new, None) == ["rows[0].a: file 0.5, new run 0.5004"]
    assert differences(old, new, 0.001) == []
    assert differences(old, {"rows": [], "n": 3}, 0.1) == [
        "rows: 1 entries in the file, 0 in the new run"
    ]
    assert differences({"n": 1}, {"m": 1}, None) == [
        "m: only in the new run",
        "n: only in the file",
    ]


def test_same_setting_compares_versions_cpu_and_threads(tmp_path):
    a = provenance(tmp_path, "x", threads=1)
    assert same_setting(a, dict(a, date="other", wall_s=5))
    assert not same_setting(a, dict(a, threads=2))
    assert not same_setting(a, dict(a, cpu="another CPU"))


def test_a_result_file_is_strict_json_and_has_provenance(tmp_path):
    make_result(tmp_path)
    document = json.loads((tmp_path / "results" / "demo.json").read_text())
    p = document["provenance"]
    for key in ("command", "git_commit", "versions", "threads", "cpu", "seeds", "date", "wall_s"):
        assert key in p
    assert set(p["versions"]) >= {"lit_rev", "torch", "lightning"}
    with pytest.raises(ValueError):
        write_result(tmp_path / "bad.json", {"x": float("nan")})
    assert not (tmp_path / "bad.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_reading_a_result_without_its_fields_names_them(tmp_path):
    (tmp_path / "x.json").write_text('{"name": "x"}')
    with pytest.raises(ResultError, match="has no 'values'"):
        read_result(tmp_path / "x.json")


def test_volatile_keys_are_not_compared_at_any_depth():
    old = {"seconds": [{"detector": "a", "seconds": 91.5}], "rows": [{"v": 1, "seconds_mean": 3}]}
    new = {"seconds": [{"detector": "a", "seconds": 80.1}], "rows": [{"v": 1, "seconds_mean": 4}]}
    assert differences(old, new, None, volatile=("seconds",)) == []
    assert differences(old, new, None) != []
    assert differences({**old, "v": 1}, {**new, "v": 2}, None, volatile=("seconds",)) == [
        "v: file 1, new run 2"
    ]

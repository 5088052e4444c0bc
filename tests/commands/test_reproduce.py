import json
import sys
from pathlib import Path

import pytest

from lit_rev.commands.reproduce import main
from lit_rev.evaluation import experiments
from lit_rev.evaluation.experiments import Experiment
from lit_rev.result_files import read_result


def toy(value_file: Path) -> Experiment:
    """An experiment whose command copies the number in ``value_file`` into its work dir."""
    script = (
        "import json, pathlib, sys; "
        "v = float(pathlib.Path(sys.argv[1]).read_text()); "
        "pathlib.Path(sys.argv[2], 'out.json').write_text(json.dumps({'v': v}))"
    )
    return Experiment(
        name="toy",
        title="a toy",
        kind="quick",
        depends=("code",),
        threads=1,
        seeds=(0,),
        commands=lambda work: [[sys.executable, "-c", script, str(value_file), str(work)]],
        collect=lambda work: json.loads((work / "out.json").read_text()),
        tolerance=0.01,
    )


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    value = tmp_path / "value.txt"
    value.write_text("0.5")
    monkeypatch.setattr(experiments, "EXPERIMENTS", {"toy": toy(value)})
    return tmp_path


def args(repo: Path, *more: str) -> list[str]:
    return [*more, "--root", str(repo), "--work_dir", str(repo / "work")]


def test_a_run_writes_the_values_with_their_provenance(repo):
    assert main(args(repo, "toy")) == 0
    document = read_result(repo / "results" / "toy.json")
    assert document["values"] == {"v": 0.5}
    assert document["provenance"]["command"].startswith("python -c ")
    assert "WORK" in document["provenance"]["command"]
    assert document["provenance"]["threads"] == 1 and document["provenance"]["seeds"] == [0]


def test_check_passes_on_a_rerun_and_fails_when_a_number_moves(repo, capsys):
    assert main(args(repo, "toy")) == 0
    assert main(args(repo, "--check", "toy")) == 0
    (repo / "value.txt").write_text("0.505")  # within the tolerance, but the setting is the same
    assert main(args(repo, "--check", "toy")) == 1
    (repo / "value.txt").write_text("0.6")
    assert main(args(repo, "--check", "toy")) == 1
    out = capsys.readouterr().out
    assert "differs: v: file 0.5, new run 0.6" in out
    # --check writes nothing
    assert read_result(repo / "results" / "toy.json")["values"] == {"v": 0.5}


def test_check_uses_the_tolerance_only_on_another_machine(repo):
    assert main(args(repo, "toy")) == 0
    path = repo / "results" / "toy.json"
    document = json.loads(path.read_text())
    document["provenance"]["cpu"] = "another CPU"
    path.write_text(json.dumps(document))
    (repo / "value.txt").write_text("0.505")
    assert main(args(repo, "--check", "toy")) == 0  # within the file's tolerance 0.01
    (repo / "value.txt").write_text("0.52")
    assert main(args(repo, "--check", "toy")) == 1


def test_stale_lists_files_whose_code_changed(repo, capsys):
    assert main(args(repo, "--stale")) == 0
    assert "toy" in capsys.readouterr().out.split("missing")[0]
    assert main(args(repo, "toy")) == 0
    capsys.readouterr()
    main(args(repo, "--stale"))
    assert "current" in capsys.readouterr().out
    (repo / "code" / "a.py").write_text("x = 2\n")
    main(args(repo, "--stale"))
    assert "stale" in capsys.readouterr().out


def test_an_unknown_experiment_is_refused(repo):
    with pytest.raises(SystemExit) as stop:
        main(args(repo, "nothere"))
    assert stop.value.code == 2

"""README.md and docs/*.md against the result files they quote (python -m lit_rev.commands.docs)."""

import difflib
from pathlib import Path

import pytest

from lit_rev.commands.docs import documents, main, rendered
from lit_rev.result_files import markers

ROOT = Path(__file__).resolve().parents[1]


def test_every_rendered_block_matches_its_result_file():
    found = []
    for path, (now, fresh) in rendered(ROOT).items():
        if now != fresh:
            diff = difflib.unified_diff(now.splitlines(), fresh.splitlines(), lineterm="", n=0)
            found.append(f"{path.relative_to(ROOT)}:\n" + "\n".join(diff))
    assert not found, (
        "documents differ from their result files; run python -m lit_rev.commands.docs\n"
        + "\n".join(found)
    )


def test_the_readme_and_docs_quote_result_files():
    readme = {name for name, _ in markers((ROOT / "README.md").read_text())}
    assert {"quickstart", "fair_quick_adult"} <= readme
    benchmark = {name for name, _ in markers((ROOT / "docs" / "ood_benchmark.md").read_text())}
    assert "ood_benchmark_embedded" in benchmark


def test_the_check_fails_on_a_stale_block_and_rendering_fixes_it(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    source = ROOT / "results" / "fair_quick_adult.json"
    (results / source.name).write_text(source.read_text())
    for part in ("lit_rev", "configs"):
        (tmp_path / part).symlink_to(ROOT / part)
    marker = "<!-- result fair_quick_adult value=rows[config=grad_pred_adult].accuracy fmt=.3f -->"
    (tmp_path / "README.md").write_text(f"GRAD: {marker}0.831<!-- /result -->\n")
    assert documents(tmp_path) == [tmp_path / "README.md"]
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "-GRAD: " in capsys.readouterr().out
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0


@pytest.mark.parametrize("name", ["quickstart", "fair_quick_adult", "ood_benchmark_embedded"])
def test_a_result_file_names_its_command_and_machine(name):
    import json

    document = json.loads((ROOT / "results" / f"{name}.json").read_text())
    p = document["provenance"]
    assert p["command"].startswith("python -m lit_rev")
    assert p["cpu"] and p["versions"]["torch"] and p["threads"] >= 1

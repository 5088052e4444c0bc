"""notebooks/grad_tradeoff.ipynb runs end to end on the smoke budget."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_tradeoff_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("GRAD_TRADEOFF_SMOKE", "1")
    monkeypatch.setenv("GRAD_TRADEOFF_OUT", str(tmp_path))
    notebook = nbformat.read(ROOT / "notebooks" / "grad_tradeoff.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    rows = json.loads((tmp_path / "grad_tradeoff.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["GRAD-pred"] * 5 + ["Vanilla", "ALFR", "LFR"]
    assert [r["lambda"] for r in rows[:5]] == [0.1, 0.3, 1.0, 3.0, 10.0]
    assert (tmp_path / "grad_tradeoff.png").is_file()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot is not shown"

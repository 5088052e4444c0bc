"""notebooks/grad_tradeoff.ipynb runs end to end on the smoke budget."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_tradeoff_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("fairlearn")
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
    assert [(r["method"], r["setting"]) for r in rows] == [
        ("Vanilla", ""),
        ("GRAD-pred", ""),
        ("ThresholdOptimizer (logistic)", ""),
        ("GRAD-pred over λ", "λ=1"),
        ("GRAD-pred over λ", "λ=10"),
        ("ExponentiatedGradient (logistic) over its bound", "bound=0.01"),
        ("ExponentiatedGradient (logistic) over its bound", "bound=0.05"),
    ]
    assert all(r["accuracy_interval"].startswith("[") for r in rows)
    assert any(r["pareto"] for r in rows)
    assert (tmp_path / "grad_tradeoff.png").is_file()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the plot is not shown"
    text = "".join(o.get("text", "") for o in outputs)
    assert "german: on the Pareto front of the chosen settings:" in text
    assert "german: on the Pareto front with the curves:" in text

"""Committed notebooks carry their outputs: a reader sees the tables and plots unrun."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Notebooks whose inputs take hours to make (benchmarks/fair_tradeoff.sh on three data sets);
#: strict, so the marker must go once the notebook is committed executed.
NOT_YET_EXECUTED = {"grad_tradeoff.ipynb"}


def code_cells_without_outputs(path: Path) -> list[int]:
    cells = json.loads(path.read_text())["cells"]
    return [i for i, c in enumerate(cells) if c["cell_type"] == "code" and not c.get("outputs")]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(
            p,
            id=p.name,
            marks=[pytest.mark.xfail(strict=True, reason="not yet executed with real inputs")]
            if p.name in NOT_YET_EXECUTED
            else [],
        )
        for p in NOTEBOOKS
    ],
)
def test_every_code_cell_of_a_committed_notebook_has_outputs(path):
    empty = code_cells_without_outputs(path)
    assert empty == [], f"{path.name}: code cells {empty} have no outputs; commit it executed"


def test_the_check_sees_a_cell_without_outputs(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": []},
            {"cell_type": "code", "source": ["1"], "outputs": [{"output_type": "stream"}]},
            {"cell_type": "code", "source": ["2"], "outputs": []},
        ]
    }
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(notebook))
    assert code_cells_without_outputs(path) == [2]

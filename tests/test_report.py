"""Reports are strict JSON: NaN and infinity (which JSON cannot hold) are written as null."""

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_rev.report import format_table, overlaid_histograms, strict_json, write_report


def strict_load(path):
    """``json.load`` that rejects the non-standard tokens NaN, Infinity and -Infinity."""

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    with open(path) as f:
        return json.load(f, parse_constant=reject)


def test_report_with_nonfinite_values_is_strict_json(tmp_path):
    rows = [
        {"name": "a", "x": float("nan"), "y": float("inf"), "z": 1.5},
        {
            "name": "b",
            "x": np.float32("nan"),
            "y": -float("inf"),
            "z": np.float64(2.0),
            "t": torch.tensor(3.0),
        },
    ]
    nested = {"v": [1.0, float("nan"), (2, float("-inf"))]}
    meta = {"h": torch.tensor(float("nan")), "nested": nested, "path": tmp_path}
    paths = write_report(rows, tmp_path, "r", meta)
    report = strict_load(paths["json"])
    assert report["rows"] == [
        {"name": "a", "x": None, "y": None, "z": 1.5},
        {"name": "b", "x": None, "y": None, "z": 2.0, "t": 3.0},
    ]
    nested = {"v": [1.0, None, [2, None]]}
    assert report["meta"] == {"h": None, "nested": nested, "path": str(tmp_path)}
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert table[0] == {"name": "a", "x": "", "y": "", "z": "1.5", "t": ""}
    assert table[1]["t"] == "3.0"


def test_strict_json_keeps_finite_values_and_types():
    value = {"i": 3, "b": True, "s": "nan", "n": None, "f": 0.25, "a": np.arange(3), "k": {1: 2.0}}
    expected = {"i": 3, "b": True, "s": "nan", "n": None, "f": 0.25, "a": [0, 1, 2]}
    expected["k"] = {"1": 2.0}
    assert strict_json(value) == expected
    assert json.dumps(strict_json([float("nan")]), allow_nan=False) == "[null]"


def test_missing_values_print_as_n_a():
    table = format_table([{"set": "x", "auroc": None, "mean": float("nan"), "v": 0.5}])
    assert table.splitlines()[-1].split() == ["x", "n/a", "nan", "0.500"]


def test_histograms_leave_out_nonfinite_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warned "invalid value encountered in divide"
        nan, inf = float("nan"), float("inf")
        samples = {"ok": [1.0, 2.0, 3.0], "diverged": [nan] * 3, "some": [2.0, inf]}
        fig = overlaid_histograms(samples, "x")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["ok", "diverged (3 non-finite not shown)", "some (1 non-finite not shown)"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_standard_parsers_accept_the_report(tmp_path, bad):
    path = write_report([{"v": bad}], tmp_path, "r")["json"]
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert strict_load(path)["rows"] == [{"v": None}]


def _python(code: str, **env_changes) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter; ``None`` in ``env_changes`` removes the variable."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow  # a fresh Python process
def test_importing_lit_rev_leaves_the_users_matplotlib_backend_alone():
    code = (
        "import lit_rev.report, lit_rev.density, lit_rev.fair, lit_rev.revnet, lit_rev.ood\n"
        "lit_rev.density.DensityModule, lit_rev.fair.GRADModule\n"
        "import matplotlib\n"
        "print(matplotlib.get_backend())"
    )
    run = _python(code, MPLBACKEND="svg")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "svg"


@pytest.mark.slow  # a fresh Python process
def test_figures_save_without_a_display_and_without_a_backend_set(tmp_path):
    code = (
        "from lit_rev.report import overlaid_histograms, save_figure\n"
        "import matplotlib\n"
        "fig = overlaid_histograms({'a': [1.0, 2.0, 2.5]}, 'x')\n"
        f"print(save_figure(fig, {str(tmp_path)!r}, 'h'), matplotlib.get_backend().lower())"
    )
    run = _python(code, MPLBACKEND=None, DISPLAY=None, WAYLAND_DISPLAY=None)
    assert run.returncode == 0, run.stderr
    path, backend = run.stdout.split()
    assert backend == "agg"
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

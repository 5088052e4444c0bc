"""Results tables and figures shared by every paper slice.

A report is a list of flat dicts (one row each). :func:`write_report` stores it as JSON,
CSV and Markdown side by side; :func:`format_table` renders it for the terminal;
:func:`save_figure` writes a matplotlib figure as PNG and, when a TensorBoard logger is
given, logs it there too.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _fmt(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def columns_of(rows: Sequence[dict]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def format_table(rows: Sequence[dict], digits: int = 3, markdown: bool = False) -> str:
    """Fixed-width (or Markdown) table of ``rows``."""
    if not rows:
        return "(empty)"
    cols = columns_of(rows)
    cells = [[_fmt(row.get(c, ""), digits) for c in cols] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = lambda values: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def write_report(rows: Sequence[dict], directory: str | Path, stem: str, meta: dict | None = None) -> dict[str, Path]:
    """Write ``rows`` to ``<stem>.json`` (with ``meta``), ``<stem>.csv`` and ``<stem>.md``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ext: directory / f"{stem}.{ext}" for ext in ("json", "csv", "md")}
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta or {}, "rows": list(rows)}, f, indent=2, default=float)
    cols = columns_of(rows)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    with open(paths["md"], "w") as f:
        f.write(format_table(rows, digits=4, markdown=True) + "\n")
    return paths


def save_figure(fig, directory: str | Path, name: str, logger=None, step: int = 0) -> Path:
    """Save ``fig`` as ``<directory>/<name>.png`` and log it to TensorBoard when possible."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    experiment = getattr(logger, "experiment", None)
    if experiment is not None and hasattr(experiment, "add_figure"):
        experiment.add_figure(name, fig, global_step=step, close=False)
    plt.close(fig)
    return path


def log_dir_of(trainer, fallback: str | Path = ".") -> Path:
    """Where a run writes its reports: the logger's version directory, else ``trainer.default_root_dir``."""
    logger = trainer.logger
    if logger is not None and getattr(logger, "log_dir", None):
        return Path(logger.log_dir)
    return Path(trainer.default_root_dir or fallback)


def overlaid_histograms(samples: dict[str, Iterable[float]], xlabel: str, title: str = "", bins: int = 50):
    """One density-normalised histogram per named sample on shared bins (the paper's Fig. 1 style)."""
    import numpy as np

    arrays = {k: np.asarray(list(v), dtype=float) for k, v in samples.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()]) if arrays else np.zeros(1)
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, a in arrays.items():
        ax.hist(a, bins=edges, density=True, histtype="stepfilled", alpha=0.4, label=name)
    ax.set_xlabel(f"{xlabel} (0.5-99.5 percentile range of all sets)")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig

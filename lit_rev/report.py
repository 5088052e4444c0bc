"""Results tables and figures shared by every paper slice.

A report is a list of flat dicts (one row each). :func:`write_report` stores it as JSON,
CSV and Markdown side by side; the JSON is strict (a NaN or infinity, which standard JSON
cannot hold, is written as ``null``, see :func:`strict_json`); :func:`format_table` renders
it for the terminal (``None``, a value that could not be given, shows as ``n/a``);
:func:`save_figure` writes a matplotlib figure as PNG and, when a TensorBoard logger is
given, logs it there too.

matplotlib is imported by the plotting functions only, and its backend is left to the user:
without a display matplotlib falls back to Agg by itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def columns_of(rows: Sequence[dict]) -> list[str]:
    """Every key of ``rows``, in the order of first appearance (rows may differ in keys)."""
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

    def line(values: Sequence[str]) -> str:
        # the first column left-aligned, the others right-aligned; one value per column
        padded = zip(values, widths, strict=True)
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(padded))

    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, ready for strict JSON.

    Python's ``json`` writes NaN and infinity as the bare tokens ``NaN``/``Infinity``, which
    are not JSON: most parsers (``jq``, JavaScript, pandas' strict mode) reject the whole
    file. Containers are converted recursively (tuples become lists, keys strings); tensors
    and numpy values become Python numbers or lists; other objects (e.g. paths) their ``str``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return strict_json(value.tolist())
    if isinstance(value, PurePath):
        return str(value)
    try:
        return strict_json(float(value))
    except (TypeError, ValueError):
        return str(value)


def write_report(
    rows: Sequence[dict], directory: str | Path, stem: str, meta: dict | None = None
) -> dict[str, Path]:
    """Write ``rows`` to ``<stem>.json`` (with ``meta``), ``<stem>.csv`` and ``<stem>.md``.

    The JSON is strict (``allow_nan=False``): a non-finite number is ``null`` there and an
    empty cell in the CSV; the Markdown table shows it as ``nan``/``inf``, or ``n/a`` for ``None``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ext: directory / f"{stem}.{ext}" for ext in ("json", "csv", "md")}
    document = strict_json({"meta": meta or {}, "rows": list(rows)})
    with atomic_open(paths["json"]) as f:
        json.dump(document, f, indent=2, allow_nan=False)
    cols = columns_of(rows)
    with atomic_open(paths["csv"], newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(document["rows"])
    with atomic_open(paths["md"]) as f:
        f.write(format_table(rows, digits=4, markdown=True) + "\n")
    return paths


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs):
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` whole.

    A crash or a full disk while writing leaves ``path`` as it was (or absent), never
    truncated: the temporary file is removed and the error raised.

    Args:
        path: the file to write.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        **kwargs: passed to :func:`open` (e.g. ``newline=""`` for CSV).

    Yields:
        The open temporary file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_figure(fig, directory: str | Path, name: str, logger=None, step: int = 0) -> Path:
    """Save ``fig`` as ``<directory>/<name>.png`` and log it to TensorBoard when possible."""
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    experiment = getattr(logger, "experiment", None)
    if experiment is not None and hasattr(experiment, "add_figure"):
        experiment.add_figure(name, fig, global_step=step, close=False)
    plt.close(fig)
    return path


def log_dir_of(trainer, fallback: str | Path = ".") -> Path:
    """Where a run writes its reports.

    The logger's version directory, else ``trainer.default_root_dir``, else ``fallback``.
    """
    logger = trainer.logger
    if logger is not None and getattr(logger, "log_dir", None):
        return Path(logger.log_dir)
    return Path(trainer.default_root_dir or fallback)


def overlaid_histograms(
    samples: dict[str, Iterable[float]], xlabel: str, title: str = "", bins: int = 50
):
    """One density-normalised histogram per named sample on shared bins (the paper's Fig. 1 style).

    Non-finite values cannot be binned: they are left out, and the legend says how many.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    arrays = {k: np.asarray(list(v), dtype=float) for k, v in samples.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()]) if arrays else np.zeros(1)
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, a in arrays.items():
        keep = a[np.isfinite(a)]
        dropped = len(a) - len(keep)
        label = f"{name} ({dropped} non-finite not shown)" if dropped else name
        if ((keep >= lo) & (keep <= hi)).any():  # density=True divides by the count in range
            ax.hist(keep, bins=edges, density=True, histtype="stepfilled", alpha=0.4, label=label)
        else:
            ax.plot([], [], label=label)
    ax.set_xlabel(f"{xlabel} (0.5-99.5 percentile range of all sets)")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


class NonFiniteResult(ValueError):
    """A figure's numbers hold NaN or infinity: the run diverged or is untrained, nothing drawn."""


def require_finite(figure: str, what: str, values) -> None:
    """Raise :class:`NonFiniteResult`, naming ``figure`` and ``what``, if a value is not finite.

    An empty or truncated plot would look like a finding, so the figures refuse to draw.

    Args:
        figure: the figure's name, for the message.
        what: the values' name, for the message.
        values: anything ``numpy.asarray`` turns into floats.
    """
    import numpy as np

    array = np.asarray(values, dtype=float).reshape(-1)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise NonFiniteResult(
            f"{figure}: {bad} of {array.size} values of {what} are not finite (NaN or inf), so "
            "there is nothing honest to draw. The run diverged or is untrained: check its "
            "training log, lower the learning rate or train longer, then run the figure again"
        )

"""The fairness results tables: the paper's headline columns, ``mean ± std`` over seeds.

Pure functions of the test results of runs (``{metric: value}`` dicts); the command that fits
the configs over several seeds and writes the tables is
``python -m lit_rev.commands.fair_results`` (:mod:`lit_rev.commands.fair_results`).
"""

from __future__ import annotations

import math

import numpy as np

HEADLINE = ("accuracy", "discrimination", "consistency", "delta")


def headline(results: dict[str, float]) -> dict[str, float]:
    """The paper's four columns, for the first protected attribute, in front of the rest."""
    first = next(
        (k[len("discrimination_") :] for k in results if k.startswith("discrimination_")), None
    )
    out = {"accuracy": results.get("accuracy", math.nan)}
    if first is not None:
        out["discrimination"] = results[f"discrimination_{first}"]
    out["consistency"] = results.get("consistency", math.nan)
    if first is not None:
        out["delta"] = results[f"delta_{first}"]
    out.update({k: v for k, v in results.items() if k not in out})
    return out


def mean_std(values: list[float]) -> tuple[str, float, float]:
    """``("mean ± std", mean, std)`` over the finite ``values``.

    The sample std (ddof=1) needs two of them, else it is ``n/a`` (NaN in the numeric
    columns), never a made-up 0.
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    if not finite.size:
        return "n/a", mean, std
    cell = f"{mean:.3f} ± " + ("n/a" if math.isnan(std) else f"{std:.3f}")
    if finite.size < values.size:
        cell += f" ({finite.size} of {values.size} seeds)"
    return cell, mean, std


def summarise(name: str, runs: list[dict[str, float]]) -> tuple[dict, dict]:
    """One config's row of ``mean ± std`` cells, and its ``_mean``/``_std`` numeric columns."""
    row: dict = {"config": name, "seeds": len(runs)}
    numeric: dict = {}
    for key in runs[0]:
        values = [r.get(key, math.nan) for r in runs]
        row[key], numeric[f"{key}_mean"], numeric[f"{key}_std"] = mean_std(values)
    return row, numeric

"""The fairness results tables: headline columns, ``mean ± std`` over seeds, 95% intervals.

Each ``mean ± std`` cell has its bootstrap 95% interval beside it, and collapsed runs are
flagged.

Pure functions of the test results of runs (``{metric: value}`` dicts, as
:class:`~lit_rev.fair.base.FairModule` leaves them in ``test_results``); the command that fits
the configs over several seeds and writes the tables is
``python -m lit_rev.commands.fair_results`` (:mod:`lit_rev.commands.fair_results`).

A run *collapsed* when its positive rate on the test set is 0 or 1: a constant predictor,
whose discrimination is 0 and consistency 1 for no merit. Its fairness numbers
(:data:`FAIRNESS_METRICS`) are left out of every ``mean ± std`` cell and interval, the cell
says how many seeds collapsed, and the ``collapsed`` column counts them; a config whose
every seed collapsed shows ``collapsed`` in those cells, never a number.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lit_rev.fair.bootstrap import percentile_interval

HEADLINE = ("accuracy", "discrimination", "consistency", "delta")

#: metrics (with or without an ``_<attribute>`` suffix) that a collapsed run must not report
FAIRNESS_METRICS = (
    "discrimination",
    "delta",
    "dp_diff",
    "eo_diff",
    "eop_diff",
    "di_ratio",
    "eo_ratio",
    "consistency",
    "consistency_hard",
)

CI_SUFFIXES = ("_ci_low", "_ci_high")


def is_collapsed(results: dict[str, float]) -> bool:
    """Whether a run predicted one class for every test row (positive rate 0 or 1)."""
    if results.get("collapsed", 0.0) == 1.0:
        return True
    rate = results.get("positive_rate", math.nan)
    return rate == 0.0 or rate == 1.0


def collapse_status(results: dict[str, float]) -> str:
    """``ok``, or a sentence saying the run collapsed and its fairness numbers mean nothing."""
    if not is_collapsed(results):
        return "ok"
    return (
        f"COLLAPSED (positive rate {results.get('positive_rate', math.nan):.3f}: a constant "
        "predictor; its discrimination and consistency are not a fair result)"
    )


def is_fairness_key(key: str) -> bool:
    """Whether ``key`` (``dp_diff_sex``, ``consistency``, ...) is one of FAIRNESS_METRICS."""
    return any(key == m or key.startswith(f"{m}_") for m in FAIRNESS_METRICS)


def metric_rows(results: dict[str, float]) -> list[dict]:
    """One ``{metric, value[, ci_low, ci_high]}`` row per metric, its interval folded in."""
    rows = []
    for key, value in results.items():
        if key.endswith(CI_SUFFIXES):
            continue
        row = {"metric": key, "value": value}
        if f"{key}_ci_low" in results:
            row["ci_low"], row["ci_high"] = results[f"{key}_ci_low"], results[f"{key}_ci_high"]
        rows.append(row)
    return rows


def first_attribute(results: dict) -> str | None:
    """The first protected attribute of ``results`` (``sex`` of ``discrimination_sex``)."""
    return next(
        (
            k[len("discrimination_") :]
            for k in results
            if k.startswith("discrimination_") and not k.endswith(CI_SUFFIXES)
        ),
        None,
    )


def headline(results: dict[str, float]) -> dict[str, float]:
    """The paper's four columns, for the first protected attribute, in front of the rest."""
    first = first_attribute(results)
    out = {"accuracy": results.get("accuracy", math.nan)}
    if first is not None:
        out["discrimination"] = results[f"discrimination_{first}"]
    out["consistency"] = results.get("consistency", math.nan)
    if first is not None:
        out["delta"] = results[f"delta_{first}"]
    for key in ("discrimination", "delta"):  # the first attribute's intervals, likewise
        for suffix in CI_SUFFIXES:
            if first is not None and f"{key}_{first}{suffix}" in results:
                out[f"{key}{suffix}"] = results[f"{key}_{first}{suffix}"]
    out.update({k: v for k, v in results.items() if k not in out})
    return out


def headline_replicates(replicates: dict, results: dict[str, float]) -> dict:
    """``replicates`` (bootstrap, keyed as the results) with the headline's copies added."""
    first = first_attribute(results)
    out = dict(replicates)
    for key in ("discrimination", "delta"):
        if first is not None and f"{key}_{first}" in replicates:
            out[key] = replicates[f"{key}_{first}"]
    return out


def mean_std(values: list[float], collapsed: int = 0) -> tuple[str, float, float]:
    """``("mean ± std", mean, std)`` over the finite ``values``.

    The sample std (ddof=1) needs two of them, else it is ``n/a`` (NaN in the numeric
    columns), never a made-up 0. ``collapsed``: how many of the NaN ``values`` are collapsed
    seeds left out on purpose (the cell says so).
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    if not finite.size:
        if collapsed:
            return f"collapsed ({collapsed} of {values.size} seeds)", mean, std
        return "n/a", mean, std
    cell = f"{mean:.3f} ± " + ("n/a" if math.isnan(std) else f"{std:.3f}")
    if finite.size < values.size:
        note = f"{finite.size} of {values.size} seeds"
        cell += f" ({note}; {collapsed} collapsed)" if collapsed else f" ({note})"
    return cell, mean, std


def mean_interval(replicates: list, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval of the mean over runs: the percentiles of the per-resample means.

    ``replicates`` holds one ``(resamples,)`` array per run, drawn with the same seed: runs
    tested on the same rows (Adult) are then resampled identically, so resample ``b``'s mean
    is the mean over seeds on one resample of the test set; runs tested on different rows
    (German's seeded split) are resampled independently, which is the bootstrap of a mean of
    independent samples. With one run it is that run's interval.
    """
    stacked = torch.stack([torch.as_tensor(np.asarray(r, dtype=float)) for r in replicates])
    return percentile_interval(stacked.mean(0), level)


def summarise(
    name: str, runs: list[dict[str, float]], replicates: list[dict] | None = None
) -> tuple[dict, dict]:
    """One config's row of ``mean ± std [95% interval]`` cells, and its numeric columns.

    ``replicates``: per run, its bootstrap replicates (``FairModule.test_bootstrap``, keyed as
    the results); a metric's interval is then :func:`mean_interval` over the runs it is
    reported for. Without them, a single run's own ``_ci_low``/``_ci_high`` are shown. The
    numeric columns are ``<key>_mean``, ``_std`` and, with an interval, ``_ci_low``,
    ``_ci_high``. Collapsed runs are left out of the fairness metrics (see the module).
    """
    collapsed = [is_collapsed(r) for r in runs]
    row: dict = {
        "config": name,
        "seeds": len(runs),
        "collapsed": f"{sum(collapsed)} of {len(runs)}",
    }
    numeric: dict = {"collapsed": sum(collapsed)}
    keys = [k for k in dict.fromkeys(k for r in runs for k in r) if not k.endswith(CI_SUFFIXES)]
    for key in keys:
        if key == "collapsed":
            continue
        dropped = [c and is_fairness_key(key) for c in collapsed]
        values = [
            math.nan if d else r.get(key, math.nan) for r, d in zip(runs, dropped, strict=True)
        ]
        cell, numeric[f"{key}_mean"], numeric[f"{key}_std"] = mean_std(values, sum(dropped))
        low = high = math.nan
        if replicates is not None:
            kept = [
                reps[key]
                for reps, d, v in zip(replicates, dropped, values, strict=True)
                if not d and key in reps and math.isfinite(v)
            ]
            if kept:
                low, high = mean_interval(kept)
        elif len(runs) == 1 and not dropped[0] and f"{key}_ci_low" in runs[0]:
            low, high = runs[0][f"{key}_ci_low"], runs[0][f"{key}_ci_high"]
        if math.isfinite(low) and math.isfinite(high):
            cell += f" [{low:.3f}, {high:.3f}]"
            numeric[f"{key}_ci_low"], numeric[f"{key}_ci_high"] = low, high
        row[key] = cell
    return row, numeric


def group_summary(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds of each (config, attribute, group)'s per-group rates.

    Args:
        rows: per-group rows of every run, each with ``config``, ``attribute``, ``group`` and
            the rates (``n``, ``base_rate``, ``positive_rate``, ``accuracy``, ``tpr``, ``fpr``).

    Returns:
        One row per (config, attribute, group): its seed count and ``mean ± std`` cells.
    """
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["config"], row["attribute"], row["group"]), []).append(row)
    out = []
    for (config, attribute, group), runs in cells.items():
        entry = {"config": config, "attribute": attribute, "group": group, "seeds": len(runs)}
        for column in ("n", "base_rate", "positive_rate", "accuracy", "tpr", "fpr"):
            entry[column] = mean_std([r[column] for r in runs])[0]
        out.append(entry)
    return out

"""The fairness results tables: headline columns, ``mean ± std`` over seeds, 95% intervals.

Each ``mean ± std`` cell has its 95% intervals beside it, and collapsed runs are flagged.
Three intervals of the mean over seeds, each in its own numeric columns:

- ``<key>_ci_low`` / ``_ci_high`` (the cell's ``[a, b] rows``): the bootstrap over the test
  rows alone (:func:`mean_interval`). It says how much the number moves with the test
  sample, for these trained models; the training seed's variance is not in it.
- ``<key>_ci_seeds_rows_low`` / ``_high`` (the cell's ``[a, b] seeds+rows``): the two-level
  bootstrap, seeds then rows within each seed
  (:func:`~lit_rev.fair.bootstrap.two_level_replicates`): how much the mean moves with the
  training seeds *and* the test rows. Read this one before calling a target met or a ranking
  resolved.
- ``<key>_ci_seeds_t_low`` / ``_high``: the seeds' t-interval of the mean, from the per-seed
  values alone (:func:`t_interval`).

The interval of a gap (discrimination, ``dp_diff``, ``eop_diff``) is that of the signed
difference between its two groups, folded to the absolute value
(:func:`~lit_rev.fair.bootstrap.folded_interval`): near a gap of 0 its lower end is 0, where
the percentile interval of the absolute gap would sit above 0.

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

from lit_rev.fair.bootstrap import (
    SIGNED,
    fold,
    folded_interval,
    percentile_interval,
    two_level_replicates,
)

HEADLINE = ("accuracy", "discrimination", "consistency", "delta")

#: the headline's named readings: soft (of the probability ``p``) and hard (of the labels)
HEADLINE_READINGS = (
    "discrimination_soft",
    "discrimination_hard",
    "consistency_soft",
    "consistency_hard",
    "delta_soft",
    "delta_hard",
)

#: per-attribute metrics whose headline copy drops the attribute (the first one's)
_PER_ATTRIBUTE = (
    "discrimination",
    "delta",
    "discrimination_soft",
    "discrimination_hard",
    "delta_soft",
    "delta_hard",
)

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
#: the suffixes of the intervals that include the training seed's variance (summarise's)
SEED_CI_SUFFIXES = (
    "_ci_seeds_rows_low",
    "_ci_seeds_rows_high",
    "_ci_seeds_t_low",
    "_ci_seeds_t_high",
)
INTERVAL_SUFFIXES = CI_SUFFIXES + SEED_CI_SUFFIXES


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
    """The first protected attribute of ``results`` (``sex`` of ``discrimination_sex``).

    The named readings (``discrimination_soft_sex``, ``discrimination_hard_sex``) are not
    attributes of their own.
    """
    readings = ("discrimination_soft_", "discrimination_hard_")
    return next(
        (
            k[len("discrimination_") :]
            for k in results
            if k.startswith("discrimination_")
            and not k.startswith(readings)
            and not k.endswith(INTERVAL_SUFFIXES)
            and not k.endswith(SIGNED)
        ),
        None,
    )


def headline(results: dict[str, float]) -> dict[str, float]:
    """The paper's four columns, for the first protected attribute, in front of the rest.

    Then the named readings of :data:`HEADLINE_READINGS` (soft, of ``p``; hard, of the
    labels), likewise for the first attribute, where the results have them.
    ``discrimination``, ``consistency`` and ``delta`` are the soft ones; ``accuracy`` is
    that of the labels the model outputs.
    """
    first = first_attribute(results)
    out = {"accuracy": results.get("accuracy", math.nan)}
    if first is not None:
        out["discrimination"] = results[f"discrimination_{first}"]
    out["consistency"] = results.get("consistency", math.nan)
    if first is not None:
        out["delta"] = results[f"delta_{first}"]
    for key in HEADLINE_READINGS:
        source = f"{key}_{first}" if key in _PER_ATTRIBUTE else key
        if (first is not None or key not in _PER_ATTRIBUTE) and source in results:
            out[key] = results[source]
    for key in _PER_ATTRIBUTE:  # the first attribute's intervals, likewise
        for suffix in CI_SUFFIXES:
            if first is not None and f"{key}_{first}{suffix}" in results:
                out[f"{key}{suffix}"] = results[f"{key}_{first}{suffix}"]
    out.update({k: v for k, v in results.items() if k not in out})
    return out


def headline_replicates(replicates: dict, results: dict[str, float]) -> dict:
    """``replicates`` (bootstrap, keyed as the results) with the headline's copies added."""
    first = first_attribute(results)
    out = dict(replicates)
    for key in _PER_ATTRIBUTE:
        for suffix in ("", SIGNED):
            if first is not None and f"{key}_{first}{suffix}" in replicates:
                out[f"{key}{suffix}"] = replicates[f"{key}_{first}{suffix}"]
    if "consistency" in replicates and "consistency_soft" not in replicates:
        out["consistency_soft"] = replicates["consistency"]
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


def mean_interval(
    replicates: list, level: float = 0.95, signed: bool = False
) -> tuple[float, float]:
    """Bootstrap interval of the mean over runs: the percentiles of the per-resample means.

    ``replicates`` holds one ``(resamples,)`` array per run, drawn with the same seed: runs
    tested on the same rows are then resampled identically, so resample ``b``'s mean is the
    mean over seeds on one resample of the test set; runs tested on different rows are
    resampled independently, which is the bootstrap of a mean of independent samples. With
    one run it is that run's interval. The test rows alone vary: the trained models are
    held fixed. ``signed``: the replicates are a gap's signed ones (``<key>_signed``), and
    the interval is folded to the absolute gap
    (:func:`~lit_rev.fair.bootstrap.folded_interval`).
    """
    stacked = torch.stack([torch.as_tensor(np.asarray(r, dtype=float)) for r in replicates])
    if signed:
        return folded_interval(stacked.mean(0), level)
    return percentile_interval(stacked.mean(0), level)


def seeds_rows_interval(
    replicates: list,
    level: float = 0.95,
    signed: bool = False,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Two-level bootstrap interval of the mean over seeds (seeds, then rows within each).

    ``replicates`` as :func:`mean_interval`'s, one array per seed. See
    :func:`~lit_rev.fair.bootstrap.two_level_replicates`; ``signed`` folds as
    :func:`mean_interval`. NaN with fewer than two seeds: one seed says nothing of the
    seeds' spread.
    """
    if len(replicates) < 2:
        return math.nan, math.nan
    draws = two_level_replicates(
        [torch.as_tensor(np.asarray(r, dtype=float)) for r in replicates], resamples, seed
    )
    return folded_interval(draws, level) if signed else percentile_interval(draws, level)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The seeds' t-interval of the mean: ``mean ± t_{n-1} · std / sqrt(n)`` (finite values).

    It holds the training seed's variance (each value is one seed's test number, with its
    test-row noise in it) but assumes the per-seed values are roughly normal. NaN with fewer
    than two finite values.
    """
    from scipy.stats import t as student_t

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return math.nan, math.nan
    half = float(student_t.ppf(0.5 + level / 2, finite.size - 1)) * float(
        finite.std(ddof=1) / math.sqrt(finite.size)
    )
    return float(finite.mean()) - half, float(finite.mean()) + half


def summarise(
    name: str, runs: list[dict[str, float]], replicates: list[dict] | None = None
) -> tuple[dict, dict]:
    """One config's row of ``mean ± std [95% interval]`` cells, and its numeric columns.

    ``replicates``: per run, its bootstrap replicates (``FairModule.test_bootstrap``, keyed as
    the results); a metric's rows-only interval is then :func:`mean_interval` over the runs it
    is reported for, and its seeds+rows interval :func:`seeds_rows_interval`. Without them,
    a single run's own ``_ci_low``/``_ci_high`` are shown. The numeric columns are
    ``<key>_mean``, ``_std`` and, with an interval, ``_ci_low``, ``_ci_high`` (rows only),
    ``_ci_seeds_rows_low``, ``_ci_seeds_rows_high`` (two-level bootstrap) and
    ``_ci_seeds_t_low``, ``_ci_seeds_t_high`` (the seeds' t-interval; two seeds or more).
    The cell shows ``[a, b] rows`` and ``[c, d] seeds+rows``. Collapsed runs are left out of
    the fairness metrics (see the module).
    """
    collapsed = [is_collapsed(r) for r in runs]
    row: dict = {
        "config": name,
        "seeds": len(runs),
        "collapsed": f"{sum(collapsed)} of {len(runs)}",
    }
    numeric: dict = {"collapsed": sum(collapsed)}
    keys = [
        k for k in dict.fromkeys(k for r in runs for k in r) if not k.endswith(INTERVAL_SUFFIXES)
    ]
    for key in keys:
        if key == "collapsed":
            continue
        dropped = [c and is_fairness_key(key) for c in collapsed]
        values = [
            math.nan if d else r.get(key, math.nan) for r, d in zip(runs, dropped, strict=True)
        ]
        cell, numeric[f"{key}_mean"], numeric[f"{key}_std"] = mean_std(values, sum(dropped))
        low = high = seeds_low = seeds_high = math.nan
        if replicates is not None:
            kept_runs = [
                reps
                for reps, d, v in zip(replicates, dropped, values, strict=True)
                if not d and key in reps and math.isfinite(v)
            ]
            signed = bool(kept_runs) and all(f"{key}{SIGNED}" in reps for reps in kept_runs)
            kept = [reps[f"{key}{SIGNED}" if signed else key] for reps in kept_runs]
            if kept:
                low, high = mean_interval(kept, signed=signed)
                seeds_low, seeds_high = seeds_rows_interval(kept, signed=signed)
        elif len(runs) == 1 and not dropped[0] and f"{key}_ci_low" in runs[0]:
            low, high = runs[0][f"{key}_ci_low"], runs[0][f"{key}_ci_high"]
        if math.isfinite(low) and math.isfinite(high):
            cell += f" [{low:.3f}, {high:.3f}] rows"
            numeric[f"{key}_ci_low"], numeric[f"{key}_ci_high"] = low, high
        if math.isfinite(seeds_low) and math.isfinite(seeds_high):
            cell += f" [{seeds_low:.3f}, {seeds_high:.3f}] seeds+rows"
            numeric[f"{key}_ci_seeds_rows_low"] = seeds_low
            numeric[f"{key}_ci_seeds_rows_high"] = seeds_high
        t_low, t_high = t_interval(values)
        if is_gap(key) and math.isfinite(t_low):
            t_low, t_high = fold(t_low, t_high)
        if math.isfinite(t_low) and math.isfinite(t_high):
            numeric[f"{key}_ci_seeds_t_low"], numeric[f"{key}_ci_seeds_t_high"] = t_low, t_high
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


#: the metrics (with or without an ``_<attribute>`` suffix) that are absolute gaps, >= 0
GAP_METRICS = ("discrimination", "dp_diff", "eo_diff", "eop_diff")


def is_gap(key: str) -> bool:
    """Whether ``key`` is an absolute gap (``discrimination_hard_sex``, ``dp_diff``, ...)."""
    return any(key == m or key.startswith(f"{m}_") for m in GAP_METRICS)

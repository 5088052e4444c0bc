"""Seeded bootstrap intervals for the fairness metrics of one test run.

A bootstrap resample draws the test rows ``N`` times with replacement; the metric on it is one
replicate, and the 2.5th and 97.5th percentiles of ``resamples`` replicates are the 95%
percentile interval. It measures how much a number moves with the test sample alone (German's
300 rows move it a lot), not with the training seed: the results tables put it next to the
``mean ± std`` over seeds, which measures the latter.

Vectorised: a resample is a vector of row multiplicities ``w`` (how often each row was drawn),
and every metric here is a function of a few weighted sums over rows: counts, sums of ``p``,
of ``ŷ``, of ``ŷ·y`` per group, and the per-row consistency terms. One matrix product
``W @ columns`` (``W`` is ``resamples x N``) gives all of them for a block of resamples, and
the metrics follow from the sums in a few tensor operations. 1,000 resamples of Adult's
15,060 test rows take about a second on one thread.

Consistency needs each row's ``k`` nearest neighbours; searching them again inside every
resample would cost the search 1,000 times. The bootstrap resamples the precomputed per-row
term ``1 − |p_n − mean of p over kNN(x_n)|`` (:func:`lit_rev.fair.metrics.neighbour_agreement`)
instead: the neighbours are those found among all test rows, and only which rows enter the
mean is resampled.

The same seed and the same ``N`` draw the same resamples, so two runs tested on the same rows
(Adult at any seed) are resampled identically; :func:`lit_rev.fair.results.summarise` uses
that to give the interval of the mean over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from lit_rev.fair.metrics import largest_gap, nan_min, smallest_ratio

#: per attribute: the metrics with a bootstrap interval (key ``<metric>_<attribute>``).
#: ``discrimination`` is the soft gap, the same number as ``discrimination_soft``, kept under
#: its old name; ``delta`` likewise is ``delta_soft``.
GROUP_METRICS = (
    "discrimination",
    "discrimination_soft",
    "discrimination_hard",
    "delta",
    "delta_soft",
    "delta_hard",
    "dp_diff",
    "eo_diff",
    "eop_diff",
    "di_ratio",
    "eo_ratio",
)

#: the gaps (per attribute) whose replicates also come signed, under ``<key>`` + :data:`SIGNED`
#: (see :func:`bootstrap_replicates`), for :func:`folded_interval`
SIGNED_GAPS = (
    "discrimination",
    "discrimination_soft",
    "discrimination_hard",
    "dp_diff",
    "eop_diff",
)

#: the suffix of a gap's signed replicates
SIGNED = "_signed"


def resample_weights(n: int, resamples: int, seed: int, block: int = 100) -> Iterator[Tensor]:
    """Row multiplicities of ``resamples`` bootstrap resamples of ``n`` rows, in blocks.

    Yields ``(b, n)`` float64 tensors (``b <= block``), each row summing to ``n``; seeded by
    ``seed`` alone, so the same ``(n, resamples, seed)`` gives the same resamples.
    """
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        drawn = torch.randint(0, n, (size, n), generator=generator)
        weights = torch.zeros(size, n, dtype=torch.float64)
        weights.scatter_add_(1, drawn, torch.ones(size, n, dtype=torch.float64))
        yield weights


def _oriented_pair(values: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the groups with the largest and smallest ``values`` among those present."""
    high = torch.where(present, values, -torch.inf).argmax(-1)
    low = torch.where(present, values, torch.inf).argmin(-1)
    return high, low


def _signed_gap(values: Tensor, pair: tuple[Tensor, Tensor] | None) -> Tensor:
    """``values[:, high] − values[:, low]`` for the groups of ``pair`` (0 without a pair)."""
    if pair is None:
        return torch.zeros(values.shape[0], dtype=values.dtype)
    high, low = pair
    return values[:, high] - values[:, low]


def _metrics_from_sums(
    sums: Tensor,
    layout: dict[str, slice],
    names: list[str],
    num_groups: list[int],
    pairs: dict[str, tuple[Tensor, Tensor] | None] | None = None,
) -> dict[str, Tensor]:
    """Every metric of each resample from its weighted column sums ``(b, columns)``.

    ``pairs``: per ``<gap>_<attribute>`` key, the two groups (furthest apart on all test
    rows) whose signed difference is that gap's ``<key>_signed`` replicate; ``None`` leaves
    the signed replicates out.
    """
    n = sums[:, layout["n"]].squeeze(1)
    out = {
        "accuracy": sums[:, layout["correct"]].squeeze(1) / n,
        "positive_rate": sums[:, layout["hard"]].squeeze(1) / n,
    }
    if "agreement" in layout:
        agreement = sums[:, layout["agreement"]] / n[:, None]
        out["consistency"], out["consistency_hard"] = agreement[:, 0], agreement[:, 1]
        out["consistency_soft"] = out["consistency"]
    for name, groups in zip(names, num_groups, strict=True):
        # per group: rows, sum of p, hard positives, positive rows, hard positives among them
        cells = sums[:, layout[name]].reshape(-1, 5, groups)
        count, prob, positive, count1, positive1 = cells.unbind(1)
        count0, positive0 = count - count1, positive - positive1
        present = count > 0
        means = {
            "discrimination_soft": (prob / count.clamp_min(1), present),
            "discrimination_hard": (positive / count.clamp_min(1), present),
            "eop_diff": (positive1 / count1.clamp_min(1), count1 > 0),
        }
        discrimination = largest_gap(*means["discrimination_soft"])
        hard_gap = largest_gap(*means["discrimination_hard"])
        rates = torch.stack(
            [positive0 / count0.clamp_min(1), positive1 / count1.clamp_min(1)], dim=1
        )
        label_present = torch.stack([count0 > 0, count1 > 0], dim=1)
        label_gaps = largest_gap(rates, label_present)
        out[f"discrimination_{name}"] = discrimination
        out[f"discrimination_soft_{name}"] = discrimination
        out[f"discrimination_hard_{name}"] = hard_gap
        out[f"delta_{name}"] = out["accuracy"] - discrimination
        out[f"delta_soft_{name}"] = out[f"delta_{name}"]
        out[f"delta_hard_{name}"] = out["accuracy"] - hard_gap
        out[f"dp_diff_{name}"] = hard_gap
        out[f"eo_diff_{name}"] = label_gaps.amax(1)
        out[f"eop_diff_{name}"] = label_gaps[:, 1]
        out[f"di_ratio_{name}"] = smallest_ratio(positive / count.clamp_min(1), present)
        out[f"eo_ratio_{name}"] = nan_min(smallest_ratio(rates, label_present))
        if pairs is not None:
            source = {"discrimination": "discrimination_soft", "dp_diff": "discrimination_hard"}
            for gap in SIGNED_GAPS:
                values = means[source.get(gap, gap)][0]
                out[f"{gap}_{name}{SIGNED}"] = _signed_gap(values, pairs[f"{gap}_{name}"])
    return out


def _gap_pairs(
    total: Tensor, layout: dict[str, slice], names: list[str], num_groups: list[int]
) -> dict[str, tuple[Tensor, Tensor] | None]:
    """Per gap key, its two groups furthest apart on all rows (``None``: fewer than two)."""
    pairs: dict[str, tuple[Tensor, Tensor] | None] = {}
    for name, groups in zip(names, num_groups, strict=True):
        count, prob, positive, count1, positive1 = total[layout[name]].reshape(5, groups)
        means = {
            "discrimination_soft": (prob / count.clamp_min(1), count > 0),
            "discrimination_hard": (positive / count.clamp_min(1), count > 0),
            "eop_diff": (positive1 / count1.clamp_min(1), count1 > 0),
        }
        means["discrimination"], means["dp_diff"] = (
            means["discrimination_soft"],
            means["discrimination_hard"],
        )
        for gap in SIGNED_GAPS:
            values, present = means[gap]
            pairs[f"{gap}_{name}"] = (
                _oriented_pair(values, present) if int(present.sum()) >= 2 else None
            )
    return pairs


def bootstrap_replicates(
    preds: Tensor,
    target: Tensor,
    protected: Tensor,
    names: list[str],
    num_groups: list[int],
    agreement: Tensor | None = None,
    resamples: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    labels: Tensor | None = None,
) -> dict[str, Tensor]:
    """``resamples`` bootstrap replicates of every test metric, ``{key: (resamples,) float64}``.

    Args:
        preds: ``(N,)`` predicted probabilities of the positive label.
        target: ``(N,)`` labels, 0 or 1.
        protected: ``(N, A)`` group codes, one column per attribute.
        names: the attributes' names (keys are ``<metric>_<name>``, as in the test results).
        num_groups: each attribute's group count.
        agreement: ``(N, 2)`` per-row consistency terms on ``p`` and on the labels
            (:func:`~lit_rev.fair.metrics.neighbour_agreement`); ``None`` leaves consistency out.
        resamples: how many resamples; 0 gives the point estimates alone (one all-ones weight).
        seed: seeds the resamples.
        threshold: ``ŷ = [p >= threshold]``, as the metrics, when ``labels`` is not given.
        labels: ``(N,)`` the predicted labels (0/1) when they are not ``[p >= threshold]``: a
            randomised classifier's drawn labels. Every hard metric (accuracy, positive
            rate, ``*_hard``, ``dp_diff``, ...) reads them; the soft ones read ``preds``.

    Besides the metrics' keys, each gap of :data:`SIGNED_GAPS` has ``<key>_signed``: the
    signed difference between the two groups that are furthest apart on all ``N`` rows
    (largest minus smallest), on each resample. Its point estimate is the gap itself; on a
    resample it may be negative, which the gap (an absolute value) cannot be. They feed
    :func:`folded_interval`.

    With ``resamples=0`` the result is the metrics on the test rows as they are, equal to the
    torchmetrics ``Metric``s' values (the tests hold them to it).
    """
    preds = preds.reshape(-1).double()
    target = target.reshape(-1).double()
    protected = protected.reshape(len(preds), -1).long()
    if protected.shape[1] != len(names) or len(names) != len(num_groups):
        raise ValueError(
            f"protected has {protected.shape[1]} columns for names {names} and "
            f"num_groups {num_groups}; give one name and group count per column"
        )
    if labels is None:
        hard = (preds >= threshold).double()
    else:
        hard = labels.reshape(-1).double()
        if hard.shape != preds.shape or not ((hard == 0) | (hard == 1)).all():
            raise ValueError(
                f"labels must be {len(preds)} values of 0 or 1 (one per row of preds), got "
                f"shape {tuple(labels.shape)} with values {hard.unique()[:5].tolist()}"
            )
    columns = [torch.ones_like(preds), (hard == target).double(), hard]
    layout = {"n": slice(0, 1), "correct": slice(1, 2), "hard": slice(2, 3)}
    width = 3
    if agreement is not None:
        columns += list(agreement.reshape(len(preds), 2).double().unbind(1))
        layout["agreement"] = slice(width, width + 2)
        width += 2
    for a, (name, groups) in enumerate(zip(names, num_groups, strict=True)):
        member = torch.nn.functional.one_hot(protected[:, a], groups).double()  # (N, G)
        for value in (torch.ones_like(preds), preds, hard, target, hard * target):
            columns += list((member * value[:, None]).unbind(1))
        layout[name] = slice(width, width + 5 * groups)
        width += 5 * groups
    table = torch.stack(columns, dim=1)  # (N, columns)
    total = table.sum(0, keepdim=True)
    pairs = _gap_pairs(total[0], layout, list(names), list(num_groups))
    if resamples == 0:
        blocks = [total]
    else:
        blocks = [w @ table for w in resample_weights(len(preds), resamples, seed)]
    return _metrics_from_sums(torch.cat(blocks), layout, list(names), list(num_groups), pairs)


def percentile_interval(replicates: Tensor, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of ``replicates`` (NaN replicates left out).

    NaN bounds when no replicate is finite (e.g. a ratio of a model with no positives).
    """
    values = replicates[torch.isfinite(replicates)].double()
    if not values.numel():
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    bounds = torch.quantile(values, torch.tensor([tail, 1.0 - tail], dtype=torch.float64))
    return float(bounds[0]), float(bounds[1])


def fold(low: float, high: float) -> tuple[float, float]:
    """The bounds of ``|d|`` for ``d`` in ``[low, high]``: 0 at the bottom if it straddles 0."""
    if low <= 0.0 <= high:
        return 0.0, max(-low, high)
    return (low, high) if low > 0.0 else (-high, -low)


def folded_interval(signed: Tensor, level: float = 0.95) -> tuple[float, float]:
    """Interval of an absolute gap: the signed gap's percentile interval, then :func:`fold`.

    The percentile interval of ``|gap|`` itself is biased upward near 0 (every replicate of
    an absolute value is ``>= 0``, so its lower percentile sits above 0 even when the true gap
    is 0). The signed difference ``d`` between the two groups has no such floor; its interval
    ``[l, h]`` covers the true ``d`` at about ``level``, and ``{|d| : d in [l, h]}`` then
    covers the true ``|d|`` at least as often: ``[0, max(-l, h)]`` when it straddles 0.
    """
    low, high = percentile_interval(signed, level)
    if math.isnan(low) or math.isnan(high):
        return low, high
    return fold(low, high)


def two_level_replicates(replicates: list[Tensor], resamples: int = 2000, seed: int = 0) -> Tensor:
    """Two-level bootstrap of the mean over seeds: seeds first, then rows within each seed.

    ``replicates`` holds one ``(B,)`` tensor per training seed: that seed's row-bootstrap
    replicates of a metric (:func:`bootstrap_replicates`). One two-level resample draws ``S``
    of the ``S`` seeds with replacement, then for each drawn seed one of its row resamples
    (uniformly among its ``B``), and averages the ``S`` values. So its spread holds both the
    training seed's variance and the test rows', where the rows-only interval (the same row
    resample averaged over the seeds) holds the rows' alone. NaN replicates (undefined
    ratios) are left out of their seed's pool; a seed with none is left out. Seeded by
    ``seed``; returns ``(resamples,)`` float64.
    """
    pools = [torch.as_tensor(r, dtype=torch.float64).reshape(-1) for r in replicates]
    pools = [r[torch.isfinite(r)] for r in pools]
    pools = [r for r in pools if r.numel()]
    if not pools:
        return torch.full((resamples,), math.nan, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, len(pools), (resamples, len(pools)), generator=generator)
    uniform = torch.rand(resamples, len(pools), generator=generator, dtype=torch.float64)
    sizes = torch.tensor([len(r) for r in pools])
    rows = (uniform * sizes[seeds]).long().clamp_max(sizes[seeds] - 1)
    # pad the pools to one (S, max B) table; each draw stays inside its own pool's length
    table = torch.full((len(pools), int(sizes.max())), math.nan, dtype=torch.float64)
    for i, r in enumerate(pools):
        table[i, : len(r)] = r
    return table[seeds, rows].mean(1)


def row_interval(
    replicates: dict[str, Tensor], key: str, level: float = 0.95
) -> tuple[float, float]:
    """The rows-only interval of ``key`` from one run's :func:`bootstrap_replicates`.

    A gap with signed replicates (``<key>_signed``) gets :func:`folded_interval`, every other
    metric :func:`percentile_interval`.
    """
    signed = replicates.get(f"{key}{SIGNED}")
    if signed is not None:
        return folded_interval(signed, level)
    return percentile_interval(replicates[key], level)

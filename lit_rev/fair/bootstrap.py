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

from collections.abc import Iterator

import torch
from torch import Tensor

from lit_rev.fair.metrics import largest_gap, nan_min, smallest_ratio

#: per attribute: the metrics with a bootstrap interval (key ``<metric>_<attribute>``)
GROUP_METRICS = (
    "discrimination",
    "delta",
    "dp_diff",
    "eo_diff",
    "eop_diff",
    "di_ratio",
    "eo_ratio",
)


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


def _metrics_from_sums(
    sums: Tensor, layout: dict[str, slice], names: list[str], num_groups: list[int]
) -> dict[str, Tensor]:
    """Every metric of each resample from its weighted column sums ``(b, columns)``."""
    n = sums[:, layout["n"]].squeeze(1)
    out = {
        "accuracy": sums[:, layout["correct"]].squeeze(1) / n,
        "positive_rate": sums[:, layout["hard"]].squeeze(1) / n,
    }
    if "agreement" in layout:
        agreement = sums[:, layout["agreement"]] / n[:, None]
        out["consistency"], out["consistency_hard"] = agreement[:, 0], agreement[:, 1]
    for name, groups in zip(names, num_groups, strict=True):
        # per group: rows, sum of p, hard positives, positive rows, hard positives among them
        cells = sums[:, layout[name]].reshape(-1, 5, groups)
        count, prob, positive, count1, positive1 = cells.unbind(1)
        count0, positive0 = count - count1, positive - positive1
        present = count > 0
        discrimination = largest_gap(prob / count.clamp_min(1), present)
        rates = torch.stack(
            [positive0 / count0.clamp_min(1), positive1 / count1.clamp_min(1)], dim=1
        )
        label_present = torch.stack([count0 > 0, count1 > 0], dim=1)
        label_gaps = largest_gap(rates, label_present)
        out[f"discrimination_{name}"] = discrimination
        out[f"delta_{name}"] = out["accuracy"] - discrimination
        out[f"dp_diff_{name}"] = largest_gap(positive / count.clamp_min(1), present)
        out[f"eo_diff_{name}"] = label_gaps.amax(1)
        out[f"eop_diff_{name}"] = label_gaps[:, 1]
        out[f"di_ratio_{name}"] = smallest_ratio(positive / count.clamp_min(1), present)
        out[f"eo_ratio_{name}"] = nan_min(smallest_ratio(rates, label_present))
    return out


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
) -> dict[str, Tensor]:
    """``resamples`` bootstrap replicates of every test metric, ``{key: (resamples,) float64}``.

    Args:
        preds: ``(N,)`` predicted probabilities of the positive label.
        target: ``(N,)`` labels, 0 or 1.
        protected: ``(N, A)`` group codes, one column per attribute.
        names: the attributes' names (keys are ``<metric>_<name>``, as in the test results).
        num_groups: each attribute's group count.
        agreement: ``(N, 2)`` per-row consistency terms on ``p`` and on ``ŷ``
            (:func:`~lit_rev.fair.metrics.neighbour_agreement`); ``None`` leaves consistency out.
        resamples: how many resamples; 0 gives the point estimates alone (one all-ones weight).
        seed: seeds the resamples.
        threshold: ``ŷ = [p >= threshold]``, as the metrics.

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
    hard = (preds >= threshold).double()
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
    if resamples == 0:
        blocks = [table.sum(0, keepdim=True)]
    else:
        blocks = [w @ table for w in resample_weights(len(preds), resamples, seed)]
    return _metrics_from_sums(torch.cat(blocks), layout, list(names), list(num_groups))


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

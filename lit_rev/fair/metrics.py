"""Fairness metrics as torchmetrics ``Metric``s, correct under DDP.

Notation (Zemel et al. 2013, "Learning Fair Representations", Sec. 4; used unchanged by Raff &
Sylvester 2018): ``p_n`` the predicted probability of the positive label for row ``n``,
``s_n`` its protected group, ``y_n`` its true label, ``ŷ_n = [p_n >= threshold]`` the hard
prediction.

DDP: every metric keeps either sums (``dist_reduce_fx="sum"``), which are exact under any
sharding, or the rows themselves (``"cat"``, for :class:`Consistency`, whose neighbours must be
searched among *all* rows). Lightning's ``DistributedSampler`` pads uneven shards with repeated
rows, which changes every metric slightly; shard exactly (or use one device) to reproduce the
one-process numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def nan_min(values: Tensor) -> Tensor:
    """Minimum over the last dimension, NaN entries skipped; NaN where all are NaN."""
    low = values.nan_to_num(torch.inf).amin(-1)
    return torch.where(torch.isinf(low), torch.nan, low)


def _flat(preds: Tensor, protected: Tensor) -> tuple[Tensor, Tensor]:
    preds, protected = preds.reshape(-1).float(), protected.reshape(-1).long()
    if preds.shape != protected.shape:
        raise ValueError(
            "preds and protected must have the same number of rows, "
            f"got {preds.shape} and {protected.shape}"
        )
    return preds, protected


def largest_gap(values: Tensor, present: Tensor) -> Tensor:
    """Max - min of ``values`` over the groups that have rows, along the last dimension.

    ``values`` and ``present`` are ``(..., num_groups)``; the result is ``(...)``, 0 where
    fewer than two groups have rows. Shared by the metrics and the bootstrap
    (:mod:`lit_rev.fair.bootstrap`), so both read one definition.
    """
    high = torch.where(present, values, -torch.inf).amax(-1)
    low = torch.where(present, values, torch.inf).amin(-1)
    enough = present.sum(-1) >= 2
    return torch.where(enough, high - low, torch.zeros_like(high))


def smallest_ratio(values: Tensor, present: Tensor) -> Tensor:
    """Min / max of ``values`` over the groups that have rows, along the last dimension.

    NaN where no group has rows or the largest value is 0 (0/0: no positives anywhere), as
    fairlearn's ``*_ratio`` metrics give; 1 with a single group present (if its value is
    positive).
    """
    high = torch.where(present, values, -torch.inf).amax(-1)
    low = torch.where(present, values, torch.inf).amin(-1)
    defined = present.any(-1) & (high > 0)
    return torch.where(defined, low / torch.where(defined, high, 1.0), torch.nan)


class Discrimination(Metric):
    """yDiscrim (Zemel et al. 2013, Eq. 14), the gap between the groups' mean predictions.

        | Σ_{n: s_n=1} p_n / N_{s=1}  −  Σ_{n: s_n=0} p_n / N_{s=0} |

    With ``num_groups > 2`` (a categorical attribute) it is the largest pairwise gap,
    ``max_g mean_g − min_g mean_g``.
    Groups without rows are ignored; with a single group present it is 0.
    ``update(preds, protected)``: ``preds`` probabilities ``(N,)``, ``protected`` codes ``(N,)``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_groups: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.num_groups = num_groups
        self.add_state(
            "group_sum", torch.zeros(num_groups, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "group_count", torch.zeros(num_groups, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, protected: Tensor) -> None:
        """Add each group's sum of predicted probabilities and its row count."""
        preds, protected = _flat(preds, protected)
        if protected.numel() and (protected.min() < 0 or protected.max() >= self.num_groups):
            raise ValueError(
                f"protected codes must lie in [0, {self.num_groups}), "
                f"got {protected.unique().tolist()}"
            )
        self.group_sum += torch.bincount(
            protected, weights=preds.double(), minlength=self.num_groups
        )
        self.group_count += torch.bincount(protected, minlength=self.num_groups).double()

    def group_means(self) -> Tensor:
        """``(num_groups,)`` mean prediction of each group (0 for a group without rows)."""
        return self.group_sum / self.group_count.clamp_min(1)

    def compute(self) -> Tensor:
        """Largest gap between the means of the groups that have rows."""
        return largest_gap(self.group_means(), self.group_count > 0).float()


class DemographicParityDifference(Discrimination):
    """Demographic-parity difference: :class:`Discrimination` on hard predictions.

    ``max_g P(ŷ=1 | s=g) − min_g P(ŷ=1 | s=g)`` with ``ŷ = [p >= threshold]``.
    """

    def __init__(self, num_groups: int = 2, threshold: float = 0.5, **kwargs):
        super().__init__(num_groups, **kwargs)
        self.threshold = threshold

    def update(self, preds: Tensor, protected: Tensor) -> None:
        """Add the batch's hard predictions to each group's counts."""
        super().update((preds >= self.threshold).float(), protected)


class DisparateImpactRatio(DemographicParityDifference):
    """Disparate-impact ratio: ``min_g P(ŷ=1 | s=g) / max_g P(ŷ=1 | s=g)``.

    The "four-fifths rule" reads this number (parity is 1, below 0.8 flags adverse impact);
    fairlearn calls it ``demographic_parity_ratio``. NaN when no group has a positive
    prediction (0/0). ``update(preds, protected)``.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        """Smallest over largest positive rate of the groups that have rows."""
        return smallest_ratio(self.group_means(), self.group_count > 0).float()


class Delta(Discrimination):
    """Delta = accuracy − discrimination (Zemel et al. 2013, Sec. 4.2; Raff & Sylvester Table 2).

    The accuracy is that of ``ŷ = [p >= threshold]`` against ``y``, or of the ``labels``
    given to ``update`` (a randomised classifier's drawn labels); the discrimination is always
    that of ``p`` (the soft gap). ``update(preds, target, protected, labels=None)``.
    """

    higher_is_better = True

    def __init__(self, num_groups: int = 2, threshold: float = 0.5, **kwargs):
        super().__init__(num_groups, **kwargs)
        self.threshold = threshold
        self.add_state("correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self, preds: Tensor, target: Tensor, protected: Tensor, labels: Tensor | None = None
    ) -> None:
        """Add the group sums of ``preds`` and the batch's correct hard predictions."""
        super().update(preds, protected)
        hard = (preds if labels is None else labels).reshape(-1) >= self.threshold
        self.correct += (hard == target.reshape(-1).bool()).sum()
        self.total += hard.numel()

    def compute(self) -> Tensor:
        """Accuracy minus discrimination."""
        return (self.correct / self.total.clamp_min(1)).float() - super().compute()


class GroupConfusion(Metric):
    """Rows and hard positives per (label, group) cell: the counts behind the error-rate metrics.

    ``count[y, g]`` rows with label ``y`` in group ``g``; ``positive[y, g]`` of them predicted
    positive (``p >= threshold``). Sums, so exact under DDP. Subclasses turn the cells into a
    number (:class:`EqualizedOddsDifference`, :class:`EqualOpportunityDifference`,
    :class:`EqualizedOddsRatio`) or a per-group table (:class:`GroupRates`).
    ``update(preds, target, protected)``.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, num_groups: int = 2, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.num_groups = num_groups
        self.threshold = threshold
        # [label, group]: how many rows, and how many predicted positive
        self.add_state(
            "count", torch.zeros(2, num_groups, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "positive", torch.zeros(2, num_groups, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, target: Tensor, protected: Tensor) -> None:
        """Add rows and hard positives to the (label, group) cells."""
        preds, protected = _flat(preds, protected)
        target = target.reshape(-1).long()
        if protected.numel() and (protected.min() < 0 or protected.max() >= self.num_groups):
            raise ValueError(
                f"protected codes must lie in [0, {self.num_groups}), "
                f"got {protected.unique().tolist()}"
            )
        if target.numel() and (target.min() < 0 or target.max() > 1):
            raise ValueError(f"target must be 0 or 1, got {target.unique().tolist()}")
        cell = target * self.num_groups + protected
        self.count += torch.bincount(cell, minlength=2 * self.num_groups).view(2, -1).double()
        hard = (preds >= self.threshold).double()
        self.positive += torch.bincount(cell, weights=hard, minlength=2 * self.num_groups).view(
            2, -1
        )

    def label_rates(self) -> Tensor:
        """``(2, num_groups)``: row 0 each group's FPR, row 1 its TPR (0 in an empty cell)."""
        return self.positive / self.count.clamp_min(1)


class EqualizedOddsDifference(GroupConfusion):
    """Equalised-odds difference: the larger of the groups' TPR gap and FPR gap.

        max_{y in {0,1}} ( max_g P(ŷ=1 | y, s=g) − min_g P(ŷ=1 | y, s=g) ),

    the true-positive-rate gap (``y = 1``) and the false-positive-rate gap (``y = 0``), each
    taken over the groups that have rows with that label (fairlearn's
    ``equalized_odds_difference``). ``update(preds, target, protected)``.
    """

    higher_is_better = False

    def compute(self) -> Tensor:
        """The larger of the two labels' largest gap in positive rate between groups."""
        return largest_gap(self.label_rates(), self.count > 0).max().float()


class EqualOpportunityDifference(GroupConfusion):
    """Equal-opportunity difference: the groups' largest TPR gap (Hardt et al. 2016).

        max_g P(ŷ=1 | y=1, s=g) − min_g P(ŷ=1 | y=1, s=g),

    over the groups with positive rows (fairlearn's ``equal_opportunity_difference``).
    ``update(preds, target, protected)``.
    """

    higher_is_better = False

    def compute(self) -> Tensor:
        """Largest gap in true-positive rate between groups."""
        return largest_gap(self.label_rates()[1], self.count[1] > 0).float()


class EqualizedOddsRatio(GroupConfusion):
    """Equalised-odds ratio: the smaller of the groups' TPR ratio and FPR ratio.

        min_{y in {0,1}} ( min_g P(ŷ=1 | y, s=g) / max_g P(ŷ=1 | y, s=g) ),

    1 is parity. A label whose largest rate is 0 (no positive predictions among its rows) has
    no ratio and is skipped; NaN if neither label has one. fairlearn's
    ``equalized_odds_ratio`` agrees whenever both ratios are defined.
    ``update(preds, target, protected)``.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        """The smaller of the two labels' min/max positive-rate ratio between groups."""
        return nan_min(smallest_ratio(self.label_rates(), self.count > 0)).float()


class GroupRates(GroupConfusion):
    """The per-group table, as fairlearn's ``MetricFrame(...).by_group`` gives it.

    ``compute()`` is ``(num_groups, 6)`` with the columns of :attr:`COLUMNS`: rows ``n``, base
    rate ``P(y=1)``, positive rate ``P(ŷ=1)``, accuracy ``P(ŷ=y)``, TPR ``P(ŷ=1 | y=1)`` and
    FPR ``P(ŷ=1 | y=0)``, each within the group. A rate with no rows to average is NaN.
    ``update(preds, target, protected)``.
    """

    COLUMNS = ("n", "base_rate", "positive_rate", "accuracy", "tpr", "fpr")

    def compute(self) -> Tensor:
        """``(num_groups, 6)`` per-group counts and rates (NaN where undefined)."""
        count, positive = self.count, self.positive
        n = count.sum(0)

        def share(part: Tensor, whole: Tensor) -> Tensor:
            return torch.where(whole > 0, part / whole.clamp_min(1), torch.nan)

        correct = positive[1] + (count[0] - positive[0])
        return torch.stack(
            [
                n,
                share(count[1], n),
                share(positive.sum(0), n),
                share(correct, n),
                share(positive[1], count[1]),
                share(positive[0], count[0]),
            ],
            dim=1,
        )


class PositiveRate(Metric):
    """Share of hard positive predictions, ``mean_n [p_n >= threshold]``.

    A constant predictor scores perfect discrimination and consistency; this column makes it
    visible (0 or 1).
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("positive", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor) -> None:
        """Count the batch's rows and its hard positives."""
        self.positive += (preds.reshape(-1) >= self.threshold).sum()
        self.total += preds.numel()

    def compute(self) -> Tensor:
        """Hard positives over rows."""
        return (self.positive / self.total.clamp_min(1)).float()


def _tied_means(
    score: Tensor, top_values: Tensor, top_indices: Tensor, columns: Tensor, k: int
) -> Tensor:
    """Neighbour means for rows whose tie at the k-th distance straddles the cut.

    Every row strictly closer than the k-th is taken, then the tied rows in index order until
    ``k`` are taken.
    """
    kth = top_values[:, k - 1 : k]
    n_closer = (top_values < kth).sum(1, keepdim=True)
    # the whole tie lies inside the window when a later value in it is larger
    inside = (top_values > kth).any(1)
    means = torch.empty(len(score), columns.shape[1], device=score.device)
    if inside.any():
        tied = torch.where(
            top_values[inside] == kth[inside], top_indices[inside], torch.iinfo(torch.long).max
        )
        tied = tied.sort(1).values  # tied row indices ascending; the rest pushed to the end
        closer = torch.where(top_values[inside] < kth[inside], top_indices[inside], -1)
        take_tied = torch.arange(tied.shape[1], device=score.device)[None] < (k - n_closer[inside])
        total = (columns[closer.clamp_min(0)] * (closer >= 0)[..., None]).sum(1)
        total += (columns[tied.clamp_max(len(columns) - 1)] * take_tied[..., None]).sum(1)
        means[inside] = total / k
    if (~inside).any():  # a tie wider than the window: scan the whole row
        row_score, row_kth = score[~inside], kth[~inside]
        closer, at_kth = row_score < row_kth, row_score == row_kth
        chosen = closer | (at_kth & (at_kth.cumsum(1) <= k - closer.sum(1, keepdim=True)))
        means[~inside] = chosen.float() @ columns / k
    return means


def neighbour_means(
    features: Tensor, values: Tensor, k: int, chunk_size: int = 2048, window: int = 64
) -> Tensor:
    """For every row ``n``, the mean of ``values`` over its ``k`` nearest rows.

    Distances are Euclidean on ``features``; row ``n`` itself is excluded (by index, so exact
    duplicates of ``n`` still count as neighbours). Rows tied at the k-th distance are taken in
    index order, lowest first, so the result does not depend on the sort algorithm.

    Ranking row ``a``'s neighbours by ``|b|² − 2 a·b`` is ranking by ``|a − b|²`` (``|a|²`` is
    the same for all ``b``), so each chunk of ``chunk_size`` rows costs one ``addmm``, one
    ``topk`` and ``chunk_size x N`` floats of memory.
    ``values`` may be ``(N,)`` or ``(N, C)``.
    """
    n = features.shape[0]
    if n < 2:
        raise ValueError("consistency needs at least two rows")
    k = min(k, n - 1)
    features = features.float()
    squared = (features * features).sum(1)
    columns = values.reshape(n, -1).float()
    out = []
    for start in range(0, n, chunk_size):
        rows = features[start : start + chunk_size]
        local = torch.arange(len(rows), device=features.device)
        score = torch.addmm(squared[None, :], rows, features.T, alpha=-2.0)
        score[local, local + start] = float("inf")
        # the k nearest plus a window of the next ones, to settle ties at the k-th distance
        top = score.topk(min(k + window, n - 1), dim=1, largest=False, sorted=True)
        means = columns[top.indices[:, :k]].mean(1)
        if top.values.shape[1] > k:
            straddle = torch.nonzero(top.values[:, k] == top.values[:, k - 1]).flatten()
            if straddle.numel():
                means[straddle] = _tied_means(
                    score[straddle], top.values[straddle], top.indices[straddle], columns, k
                )
        out.append(means)
    return torch.cat(out).reshape(values.shape)


def neighbour_agreement(
    features: Tensor, preds: Tensor, k: int = 10, chunk_size: int = 2048
) -> Tensor:
    """Each row's term of the consistency sum, ``1 − |p_n − mean of p over kNN(x_n)|``.

    Consistency is the mean of these terms. The bootstrap (:mod:`lit_rev.fair.bootstrap`)
    resamples them instead of searching the neighbours again in every resample: the
    neighbours stay those found among all test rows. ``preds`` may be ``(N,)`` or ``(N, C)``
    (several prediction columns share one neighbour search).
    """
    return 1.0 - (preds - neighbour_means(features, preds, k, chunk_size)).abs()


class Consistency(Metric):
    """yNN consistency (Zemel et al. 2013, Eq. 15; Raff & Sylvester Sec. 4).

        1 − (1/N) Σ_n | p_n − (1/k) Σ_{j ∈ kNN(x_n)} p_j |

    The neighbours are found among all rows seen, on the *non-protected* features ``x``, the
    point itself excluded (see :func:`neighbour_means` for ties). ``hard=True`` uses
    ``ŷ = [p >= threshold]`` instead of ``p`` (Zemel's original reading, on labels).
    ``update(features, preds)``. The rows are kept (``cat`` states) until ``compute``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        k: int = 10,
        hard: bool = False,
        threshold: float = 0.5,
        chunk_size: int = 2048,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.k = k
        self.hard = hard
        self.threshold = threshold
        self.chunk_size = chunk_size
        self.add_state("features", [], dist_reduce_fx="cat")
        self.add_state("preds", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, preds: Tensor) -> None:
        """Keep the batch's features and (hard, if asked) predictions."""
        preds = preds.reshape(-1).float()
        if self.hard:
            preds = (preds >= self.threshold).float()
        self.features.append(features.reshape(len(preds), -1).float())
        self.preds.append(preds)

    def compute(self) -> Tensor:
        """One minus the mean gap between each prediction and its neighbours' mean."""
        features, preds = dim_zero_cat(self.features), dim_zero_cat(self.preds)
        return neighbour_agreement(features, preds, self.k, self.chunk_size).mean()


class PredictionRows(Metric):
    """The test rows themselves, for what needs all of them at once.

    Consistency's neighbour search and the bootstrap intervals (:mod:`lit_rev.fair.bootstrap`)
    read them.

    ``update(features, preds, target, protected, labels=None)`` with ``protected``
    ``(N, attributes)`` and ``labels`` the predicted labels (default ``[p >= threshold]``);
    ``compute()`` returns them concatenated as a dict (``cat`` states, so under DDP every
    process gets all rows, in the same order for every key).
    """

    is_differentiable = False
    full_state_update = False
    NAMES = ("features", "preds", "labels", "target", "protected")

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        for name in self.NAMES:
            self.add_state(name, [], dist_reduce_fx="cat")

    def update(
        self,
        features: Tensor,
        preds: Tensor,
        target: Tensor,
        protected: Tensor,
        labels: Tensor | None = None,
    ) -> None:
        """Keep the batch's rows."""
        preds = preds.reshape(-1).float()
        labels = preds >= self.threshold if labels is None else labels.reshape(-1)
        self.features.append(features.reshape(len(preds), -1).float())
        self.preds.append(preds)
        self.labels.append(labels.float())
        self.target.append(target.reshape(-1).long())
        self.protected.append(protected.reshape(len(preds), -1).long())

    def compute(self) -> dict[str, Tensor]:
        """The rows: ``features``, ``preds``, ``labels`` (0/1), ``target``, ``protected``.

        Shapes ``(N, F)``, ``(N,)``, ``(N,)``, ``(N,)`` and ``(N, A)``.
        """
        return {name: dim_zero_cat(getattr(self, name)) for name in self.NAMES}

"""The four OOD-detection metrics every table of the project reports, and OpenOOD's forms.

The convention, stated once for the whole project:

- A score is higher for an input that looks more out-of-distribution (bits/dim, typicality,
  energy, ...). A detector whose natural output is a confidence is negated before it gets here.
- ``auroc`` and ``aupr_out`` take the OOD set as the positive class, ranked by the score.
- ``aupr_in`` takes the in-distribution set as the positive class, ranked by the negated
  score. AUPR is the average precision (the step-wise area of sklearn's
  ``average_precision_score``), not a trapezoid over the precision-recall curve.
- ``fpr_at_95_tpr``: the true-positive rate is measured on the in-distribution set (the
  convention of the ODIN, energy and KNN papers: an input is *accepted* as in-distribution
  when its score is at or below a threshold). The threshold ``t`` is the smallest score at
  which at least 95% of the in-distribution scores are ``<= t``; every input scoring ``<= t``
  is accepted, ties at ``t`` included, in either set. The value is the fraction of the OOD
  set accepted at ``t``. This is the first point with ``tpr >= 0.95`` on the ROC curve with
  the in-distribution set positive and the negated score, i.e.
  ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``. sklearn's default
  ``drop_intermediate=True`` drops collinear points of the curve, which can skip that point
  and give a larger FPR: with each of 20 score values held by one in-distribution and one OOD
  input, the exact answer is 0.95 and the default curve gives 1.0.

OpenOOD v1.5 (``openood/evaluators/metrics.py``, ``auc_and_fpr_recall``) reports two of these
differently; :func:`openood_metrics` gives its forms, named apart, from the same ranks:

- ``fpr_at_95_tpr_openood``: the OOD set is the positive class and the TPR is measured on it.
  The threshold ``t`` is the largest score at which at least 95% of the OOD scores are
  ``>= t``; every input scoring ``>= t`` is flagged as OOD, ties at ``t`` included. The value
  is the fraction of the in-distribution set flagged at ``t``: the first point with
  ``tpr >= 0.95`` of ``sklearn.metrics.roc_curve(is_ood, score, drop_intermediate=False)``.
  OpenOOD calls ``roc_curve`` with its default ``drop_intermediate=True``; that differs only
  where the point lies on a straight stretch of the curve drawn by tied scores.
- ``aupr_in_openood`` and ``aupr_out_openood``: the area under the precision-recall curve by
  trapezoids, ``sklearn.metrics.auc(recall, precision)`` of
  ``sklearn.metrics.precision_recall_curve`` (which ends at recall 0, precision 1), with the
  positive class of ``aupr_in`` and ``aupr_out``. Over tied scores a trapezoid interpolates
  precision linearly between thresholds, where average precision takes a step.

All are computed with torchmetrics (``BinaryAUROC``, ``BinaryAveragePrecision``,
``BinaryROC``, ``BinaryPrecisionRecallCurve``) at every distinct score, with no threshold
binning, so ties are exact, and in float64. Two things are done around torchmetrics to keep
that so: the scores are replaced by their dense ranks scaled to ``[0, 1]`` (torchmetrics
applies a sigmoid to values outside ``[0, 1]``, which in float64 ties every score above ~37:
all metrics depend only on the order and the ties, which ranks keep), and torch's default
dtype is float64 during the calls (torchmetrics counts true/false positives in the default
dtype, float32 otherwise, where e.g. 19/20 rounds below 0.95). The ranks are taken in the
scores' own kind: integer scores as int64, not through a float64 cast that would tie
neighbours above 2**53.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryPrecisionRecallCurve,
    BinaryROC,
)

# The column order every OOD table of the project uses.
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")
# OpenOOD v1.5's forms of three of them (:func:`openood_metrics`), in the same order.
OPENOOD_METRICS = ("aupr_in_openood", "aupr_out_openood", "fpr_at_95_tpr_openood")

# The share of the in-distribution set accepted at the FPR@95 threshold.
TPR_LEVEL = 0.95


def checked_scores(scores: Tensor, name: str) -> Tensor:
    """``scores`` as a vector to rank, or ``ValueError`` naming ``name``: empty or non-finite.

    Floating-point scores come back as float64 (exact for every float dtype); integer (and
    boolean) scores as int64, so that integers beyond float64's 53-bit mantissa keep their
    order instead of being tied by a cast. A metric over NaN or infinite scores would rank
    them anyway and look like a finding, so there is none: the caller reports the run as
    failed instead.
    """
    values = torch.as_tensor(scores).detach().cpu()
    if values.ndim != 1:
        raise ValueError(
            f"{name} must hold one score per input, shape (N,), got shape {tuple(values.shape)}; "
            "flatten or select the score column"
        )
    if not len(values):
        raise ValueError(f"{name} is empty: an OOD metric needs at least one score in each set")
    if values.is_complex():
        raise ValueError(f"{name} holds complex scores ({values.dtype}): pass real scores")
    if not values.is_floating_point():
        if values.dtype == torch.uint64:
            # torch has few uint64 kernels: read the bits as int64, where values >= 2**63 are < 0
            values = values.view(torch.int64)
            if bool((values < 0).any()):
                raise ValueError(
                    f"{name} holds uint64 scores of 2**63 or more, which cannot be ranked in "
                    "int64: subtract a common offset or pass them as int64"
                )
        return values.to(torch.int64)
    values = values.to(torch.float64)
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise ValueError(
            f"{name} holds {bad} non-finite (NaN or infinite) of {len(values)} scores: no "
            "OOD metric is given over them; the model diverged or is untrained, fix it or "
            "drop those inputs"
        )
    return values


#: The largest integer magnitude below which float64 holds every integer exactly.
FLOAT64_EXACT_INTEGERS = 2**53


def common_scores(inside: Tensor, outside: Tensor) -> Tensor:
    """Both sets in one vector whose dtype keeps their order: int64 or float64.

    Integer scores beside floating-point ones go to float64 only if every one of them is
    exact there (magnitude at most 2**53); otherwise the order would change, so it is refused.
    """
    if inside.dtype == outside.dtype:
        return torch.cat([inside, outside])
    for integers, name, other in (
        (inside, "in_scores", "ood_scores"),
        (outside, "ood_scores", "in_scores"),
    ):
        if integers.dtype == torch.int64:
            largest = int(integers.abs().max())
            if largest > FLOAT64_EXACT_INTEGERS:
                raise ValueError(
                    f"{name} holds integer scores of magnitude up to {largest} (above 2**53) "
                    f"while {other} holds floats: float64 cannot keep their order, so they "
                    "cannot be ranked together; pass both sets as integers (int64) or both as "
                    "floats"
                )
    return torch.cat([inside.to(torch.float64), outside.to(torch.float64)])


@contextmanager
def float64_default() -> Iterator[None]:
    """Make float64 torch's default dtype inside the block (and restore the previous one).

    torchmetrics multiplies its integer targets by a Python float, which gives the default
    dtype: with float64 the ROC and precision-recall counts and rates are float64.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def ranked(in_scores: Tensor, ood_scores: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both sets checked and ranked for torchmetrics: ``(more_ood, more_in, is_ood, is_in)``.

    ``more_ood`` holds the dense ranks of the scores scaled to ``[0, 1]`` (in-distribution set
    first), ``more_in`` the ranks of the negated scores; ``is_ood`` and ``is_in`` the labels.
    """
    inside = checked_scores(in_scores, "in_scores")
    outside = checked_scores(ood_scores, "ood_scores")
    scores = common_scores(inside, outside)
    distinct, rank = torch.unique(scores, sorted=True, return_inverse=True)
    top = max(len(distinct) - 1, 1)
    more_ood = rank.to(torch.float64) / top  # same order and ties as the scores, in [0, 1]
    more_in = (top - rank).to(torch.float64) / top  # the negated scores' order
    is_ood = torch.cat([torch.zeros(len(inside)), torch.ones(len(outside))]).long()
    return more_ood, more_in, is_ood, 1 - is_ood


def ood_metrics(in_scores: Tensor, ood_scores: Tensor) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR@95 of telling ``ood_scores`` from ``in_scores``.

    Higher scores mean more OOD; see the module docstring for the convention (OOD positive for
    ``auroc`` and ``aupr_out``, in-distribution positive for ``aupr_in``, the TPR of
    ``fpr_at_95_tpr`` measured on the in-distribution set, ties at its threshold accepted).

    Args:
        in_scores: ``(N,)`` scores of the in-distribution set.
        ood_scores: ``(M,)`` scores of the OOD set.

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"}`` (the order of
        :data:`OOD_METRICS`), each a float in ``[0, 1]``.

    Raises:
        ValueError: a set is empty, not a vector, or holds a NaN or infinite score; or one
            set holds integers beyond 2**53 and the other floats (no exact common order).
    """
    more_ood, more_in, is_ood, is_in = ranked(in_scores, ood_scores)
    with float64_default():
        auroc = BinaryAUROC(thresholds=None)(more_ood, is_ood)
        aupr_out = BinaryAveragePrecision(thresholds=None)(more_ood, is_ood)
        aupr_in = BinaryAveragePrecision(thresholds=None)(more_in, is_in)
        fpr, tpr, _ = BinaryROC(thresholds=None)(more_in, is_in)
    # tpr ends at 1, so a point with tpr >= 0.95 exists; argmax gives the first.
    first = int(torch.argmax((tpr >= TPR_LEVEL).to(torch.int8)))
    return {
        "auroc": float(auroc),
        "aupr_in": float(aupr_in),
        "aupr_out": float(aupr_out),
        "fpr_at_95_tpr": float(fpr[first]),
    }


def fpr_at_tpr(scores: Tensor, positive: Tensor) -> float:
    """The FPR at the first ROC point with ``tpr >= TPR_LEVEL`` (ranks in ``[0, 1]``, float64)."""
    fpr, tpr, _ = BinaryROC(thresholds=None)(scores, positive)
    # tpr ends at 1, so a point with tpr >= 0.95 exists; argmax gives the first.
    return float(fpr[int(torch.argmax((tpr >= TPR_LEVEL).to(torch.int8)))])


def trapezoid_aupr(scores: Tensor, positive: Tensor) -> float:
    """Area under the precision-recall curve by trapezoids, the curve ending at (0, 1)."""
    precision, recall, _ = BinaryPrecisionRecallCurve(thresholds=None)(scores, positive)
    # recall runs from 1 down to 0: the area is the negated trapezoid sum
    return float(-torch.trapezoid(precision, recall))


def openood_metrics(in_scores: Tensor, ood_scores: Tensor) -> dict[str, float]:
    """OpenOOD v1.5's AUPR-in, AUPR-out and FPR@95 of telling ``ood_scores`` from ``in_scores``.

    Higher scores mean more OOD, as for :func:`ood_metrics`; the module docstring gives both
    conventions. ``aupr_in_openood`` and ``aupr_out_openood`` integrate the precision-recall
    curve by trapezoids (in-distribution, resp. OOD, positive); ``fpr_at_95_tpr_openood`` takes
    the OOD set as the positive class and measures the TPR on it.

    Args:
        in_scores: ``(N,)`` scores of the in-distribution set.
        ood_scores: ``(M,)`` scores of the OOD set.

    Returns:
        ``{"aupr_in_openood", "aupr_out_openood", "fpr_at_95_tpr_openood"}`` (the order of
        :data:`OPENOOD_METRICS`), each a float in ``[0, 1]``.

    Raises:
        ValueError: as :func:`ood_metrics`.
    """
    more_ood, more_in, is_ood, is_in = ranked(in_scores, ood_scores)
    with float64_default():
        return {
            "aupr_in_openood": trapezoid_aupr(more_in, is_in),
            "aupr_out_openood": trapezoid_aupr(more_ood, is_ood),
            "fpr_at_95_tpr_openood": fpr_at_tpr(more_ood, is_ood),
        }

"""OOD detection shared by every slice: metrics, classifier detectors, the WAIC score.

The metrics of every OOD table, post-hoc detectors for any trained classifier, and the WAIC
score of a density-model ensemble.

Convention: a score is higher for an input that looks more out-of-distribution. AUROC and
AUPR-out take the OOD set as the positive class; AUPR-in takes the in-distribution set as the
positive class (scores negated); FPR@95 is the fraction of the OOD set accepted as
in-distribution at the threshold that accepts 95% of the in-distribution set (TPR measured on
in-distribution data, as in ODIN). OpenOOD v1.5's forms (TPR on the OOD set; AUPR by
trapezoids) are :func:`~lit_rev.ood.metrics.openood_metrics`, named ``*_openood``. Details in
:mod:`lit_rev.ood.metrics`.

This package may import torch, torchmetrics, lightning, :mod:`lit_rev.report`,
:mod:`lit_rev.inference`, :mod:`lit_rev.options` and :mod:`lit_rev.lazy`, never a slice
(``lit_rev.density``, ``lit_rev.revnet``, ...).
"""

from lit_rev.lazy import lazy_names
from lit_rev.ood.detectors import (
    KNN,
    ODIN,
    ClassifierDetector,
    Energy,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    make_detector,
)
from lit_rev.ood.ensemble import waic_score

# Built on torchmetrics: loaded on first use.
__getattr__, __dir__ = lazy_names(
    __name__,
    {"lit_rev.ood.metrics": ("OOD_METRICS", "OPENOOD_METRICS", "ood_metrics", "openood_metrics")},
)

__all__ = [
    "KNN",
    "ODIN",
    "OOD_METRICS",
    "OPENOOD_METRICS",
    "ClassifierDetector",
    "Energy",
    "Mahalanobis",
    "MaxLogit",
    "MaxSoftmax",
    "make_detector",
    "ood_metrics",
    "openood_metrics",
    "waic_score",
]

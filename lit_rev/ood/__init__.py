"""OOD detection shared by every slice: the metrics of every OOD table.

Convention: a score is higher for an input that looks more out-of-distribution. AUROC and
AUPR-out take the OOD set as the positive class; AUPR-in takes the in-distribution set as the
positive class (scores negated); FPR@95 is the fraction of the OOD set accepted as
in-distribution at the threshold that accepts 95% of the in-distribution set (TPR measured on
in-distribution data, OpenOOD's convention). Details in :mod:`lit_rev.ood.metrics`.

This package may import torch, torchmetrics, lightning, :mod:`lit_rev.report` and
:mod:`lit_rev.options`, never a slice (``lit_rev.density``, ``lit_rev.revnet``, ...).
"""

from lit_rev.ood.metrics import OOD_METRICS, ood_metrics

__all__ = ["OOD_METRICS", "ood_metrics"]

"""The density figures of ``python -m lit_rev.commands.figures``: rows and plots of a trained flow.

Bits/dim histograms of the in-distribution test set against each OOD set (the paper's Fig. 1
style), the ``log p(z)`` / ``log|det|`` decomposition and the graying curve (see
:mod:`lit_rev.density.analysis` for the numbers). Each plot refuses numbers that are not
finite (:class:`lit_rev.report.NonFiniteResult`). matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lit_rev.density.analysis import decomposition_figure, graying_figure, score_images
from lit_rev.density.ood_evaluation import auroc
from lit_rev.report import require_finite


def bpd_of_sets(module, sets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-image bits/dim (float64) of every set of integer images.

    Args:
        module: a trained density module (in eval mode).
        sets: set name -> integer images.

    Returns:
        Set name -> bits/dim per image.
    """
    return {name: score_images(module, k)["bpd"].double() for name, k in sets.items()}


def bpd_rows(bpd: dict[str, torch.Tensor]) -> list[dict]:
    """One row per set: its image count and the mean and std of its bits/dim.

    Args:
        bpd: set name -> bits/dim per image.

    Returns:
        Rows with ``set``, ``n``, ``bpd_mean``, ``bpd_std``.
    """
    return [
        {"set": n, "n": len(v), "bpd_mean": v.mean().item(), "bpd_std": v.std().item()}
        for n, v in bpd.items()
    ]


def bpd_histograms_plot(bpd: dict[str, torch.Tensor], in_name: str, title: str = ""):
    """One panel per OOD set: its bits/dim histogram over the in-distribution one's, with AUROC.

    All panels share the bins (0.5-99.5 percentiles of every value), so they compare.

    Args:
        bpd: set name -> bits/dim per image, the in-distribution set ``in_name`` among them.
        in_name: the in-distribution set.
        title: the figure's title (default: says what the panels show).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    for name, values in bpd.items():
        require_finite("bits/dim histograms", f"the bits/dim of {name}", values)
    ood = [n for n in bpd if n != in_name]
    if not ood:
        raise ValueError(f"bits/dim histograms: no OOD set beside {in_name!r}; got {list(bpd)}")
    everything = np.concatenate([np.asarray(v, dtype=float) for v in bpd.values()])
    lo, hi = np.percentile(everything, [0.5, 99.5])
    edges = np.linspace(lo, hi + (hi <= lo), 51)
    cols = min(3, len(ood))
    rows = math.ceil(len(ood) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    inside = np.clip(np.asarray(bpd[in_name], dtype=float), lo, hi)
    for ax, name in zip(axes.flat, ood, strict=False):
        outside = np.clip(np.asarray(bpd[name], dtype=float), lo, hi)
        ax.hist(inside, edges, density=True, alpha=0.5, color="tab:blue", label=f"{in_name} (in)")
        ax.hist(outside, edges, density=True, alpha=0.5, color="tab:red", label=f"{name} (OOD)")
        score = auroc(torch.as_tensor(bpd[in_name]), torch.as_tensor(bpd[name]))
        ax.set_title(f"{name}: AUROC {score:.2f}", fontsize=10)
        ax.set_xlabel("bits/dim (lower = more likely)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ood) :]:
        ax.set_visible(False)
    fig.suptitle(
        title
        or f"Bits/dim of a Glow trained on {in_name}: test set vs each OOD set "
        "(AUROC < 0.5: OOD looks more likely)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def decomposition_plot(values: dict[str, dict[str, torch.Tensor]], in_name: str):
    """:func:`lit_rev.density.analysis.decomposition_figure` after a finiteness check.

    Args:
        values: set name -> ``{"log_pz": ..., "log_det": ...}`` per image.
        in_name: the in-distribution set.

    Returns:
        The matplotlib figure.
    """
    for name, parts in values.items():
        for key in ("log_pz", "log_det"):
            require_finite("decomposition", f"{key} of {name}", parts[key])
    fig = decomposition_figure(values, in_name)
    fig.tight_layout()
    return fig


def graying_plot(rows: list[dict], in_name: str):
    """:func:`lit_rev.density.analysis.graying_figure` with a legend, after a finiteness check.

    Args:
        rows: the rows of :func:`lit_rev.density.analysis.graying_curve`.
        in_name: the grayed (in-distribution) set.

    Returns:
        The matplotlib figure.
    """
    require_finite("graying curve", "bits/dim", [r["bpd"] for r in rows])
    fig = graying_figure(rows, in_name)
    ax = fig.axes[0]
    ax.lines[0].set_label(f"mean bits/dim of the grayed {in_name} test set")
    for r in rows:
        ax.annotate(
            f"{r['bpd']:.2f}",
            (r["factor"], r["bpd"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.margins(y=0.12)  # room for the labels of the end points
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

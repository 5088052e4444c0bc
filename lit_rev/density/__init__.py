"""Density models and OOD scores of "Do Deep Generative Models Know What They Don't Know?".

Nalisnick et al. 2019: Glow, PixelCNN++ and a VAE behind one :class:`DensityModule`, which
reports bits/dim and the OOD evaluation; the paper's analyses are in
:mod:`lit_rev.density.analysis`.
"""

from lit_rev.callbacks import CPUTimeBudget, PolyakAveraging
from lit_rev.density.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FlowSequence,
    FlowStep,
    InvConv1x1,
    SplitPrior,
    Squeeze,
)
from lit_rev.density.glow import Glow
from lit_rev.density.metrics import BitsPerDim, bits_per_dim
from lit_rev.density.module import DensityModule
from lit_rev.density.ood import OODEvaluation, ood_rows, write_ood_report
from lit_rev.density.pixelcnnpp import PixelCNNPP, WeightNorm
from lit_rev.density.scores import InputComplexity, LikelihoodRatio, OODScore, Typicality
from lit_rev.density.vae import VAE

__all__ = [
    "VAE",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "BitsPerDim",
    "CPUTimeBudget",
    "DensityModule",
    "FlowLayer",
    "FlowSequence",
    "FlowStep",
    "Glow",
    "InputComplexity",
    "InvConv1x1",
    "LikelihoodRatio",
    "OODEvaluation",
    "OODScore",
    "PixelCNNPP",
    "PolyakAveraging",
    "SplitPrior",
    "Squeeze",
    "Typicality",
    "WeightNorm",
    "bits_per_dim",
    "ood_rows",
    "write_ood_report",
]

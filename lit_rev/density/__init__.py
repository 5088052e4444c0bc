"""Density models and OOD scores of "Do Deep Generative Models Know What They Don't Know?".

Nalisnick et al. 2019: Glow, PixelCNN++ and a VAE behind one :class:`DensityModule`, which
reports bits/dim and the OOD evaluation; the paper's analyses are in
:mod:`lit_rev.density.analysis`. The flow layers are in :mod:`lit_rev.density.flows`.
"""

from lit_rev.density.glow import Glow
from lit_rev.density.pixelcnnpp import PixelCNNPP
from lit_rev.density.vae import VAE
from lit_rev.lazy import lazy_names

# Built on Lightning or torchmetrics: loaded on first use (``from lit_rev.density import Glow``
# needs torch only).
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "lit_rev.density.metrics": ("bits_per_dim",),
        "lit_rev.density.module": ("DensityModule",),
        "lit_rev.density.ood_evaluation": ("OODEvaluation",),
        "lit_rev.density.scores": ("InputComplexity", "LikelihoodRatio", "OODScore", "Typicality"),
    },
)

__all__ = [
    "VAE",
    "DensityModule",
    "Glow",
    "InputComplexity",
    "LikelihoodRatio",
    "OODEvaluation",
    "OODScore",
    "PixelCNNPP",
    "Typicality",
    "bits_per_dim",
]

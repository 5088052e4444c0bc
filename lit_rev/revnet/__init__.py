"""RevNets, the ResNets they are compared with, and the tools that measure their memory.

Gomez et al. (2017), "The Reversible Residual Network: Backpropagation Without Storing
Activations". See docs/revnet.md. :func:`build` makes any preset by name (``"revnet38"``,
``"resnet32"``, ...); the building blocks are in :mod:`lit_rev.revnet.blocks` and
:mod:`lit_rev.revnet.reversible`.
"""

from lit_rev.lazy import lazy_names
from lit_rev.revnet.networks import ResNet, RevNet, build
from lit_rev.revnet.reversible import InvertibleLayer, ReversibleBlock, ReversibleSequence
from lit_rev.revnet.transformer import ReversibleTransformerBlock, ReversibleViT

# Built on Lightning or torchmetrics: loaded on first use (``from lit_rev.revnet import
# ReversibleBlock`` needs torch only).
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "lit_rev.revnet.memory": ("ActivationMemoryMonitor", "SavedTensorMeter"),
        "lit_rev.revnet.module": ("ImageClassifier",),
    },
)

__all__ = [
    "ActivationMemoryMonitor",
    "ImageClassifier",
    "InvertibleLayer",
    "ResNet",
    "RevNet",
    "ReversibleBlock",
    "ReversibleSequence",
    "ReversibleTransformerBlock",
    "ReversibleViT",
    "SavedTensorMeter",
    "build",
]

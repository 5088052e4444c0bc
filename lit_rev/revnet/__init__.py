"""RevNets, the ResNets they are compared with, and the tools that measure their memory.

Gomez et al. (2017), "The Reversible Residual Network: Backpropagation Without Storing
Activations". See docs/revnet.md.
"""

from lit_rev.revnet.blocks import (
    DownsampleCoupling,
    InjectivePad,
    PoolPadShortcut,
    ResidualUnit,
    SpaceToDepth,
    residual_function,
)
from lit_rev.revnet.memory import ActivationMemoryMonitor, SavedTensorMeter
from lit_rev.revnet.module import ImageClassifier
from lit_rev.revnet.networks import (
    ARCHITECTURES,
    PAPER_PARAMS,
    ResNet,
    RevNet,
    build,
    resnet32,
    resnet110,
    resnet164,
    revnet38,
    revnet104,
    revnet110,
    revnet164,
)
from lit_rev.revnet.reversible import (
    Coupling,
    InvertibleLayer,
    ReversibleBlock,
    ReversibleSequence,
    frozen_running_stats,
)
from lit_rev.revnet.transformer import (
    FeedForward,
    ReversibleTransformerBlock,
    ReversibleViT,
    SelfAttention,
)

__all__ = [
    "ARCHITECTURES",
    "PAPER_PARAMS",
    "ActivationMemoryMonitor",
    "Coupling",
    "DownsampleCoupling",
    "FeedForward",
    "ImageClassifier",
    "InjectivePad",
    "InvertibleLayer",
    "PoolPadShortcut",
    "ResNet",
    "ResidualUnit",
    "RevNet",
    "ReversibleBlock",
    "ReversibleSequence",
    "ReversibleTransformerBlock",
    "ReversibleViT",
    "SavedTensorMeter",
    "SelfAttention",
    "SpaceToDepth",
    "build",
    "frozen_running_stats",
    "residual_function",
    "resnet32",
    "resnet110",
    "resnet164",
    "revnet38",
    "revnet104",
    "revnet110",
    "revnet164",
]

"""RevNets and the pre-activation ResNets they are compared with, at the paper's shapes.

Every network is stem (conv-BN-ReLU) -> body -> head (BN-ReLU-pool-linear); ``features(x)`` is
everything before the head's linear layer (what OOD detectors read). The body is one
:class:`ReversibleSequence`. For a RevNet it holds reversible blocks plus one stored
:class:`DownsampleCoupling` where a stage changes resolution or width (the official code
stores every stage's first unit; a first unit that keeps the shape is reversible here, which
computes the same function). For a ResNet it holds plain residual units (there
``memory_saving=True`` means each unit is recomputed from its stored input, i.e. per-unit
checkpointing).

``RevNet(..., fully_reversible=True)`` is i-RevNet-style (Jacobsen et al. 2018): each stored
strided unit becomes a :class:`SpaceToDepth` squeeze and, where the preset widens beyond it, an
:class:`InjectivePad`, then a reversible block, so the whole body is a bijection and nothing in
it is stored. A bijection keeps the number of values per image, so the stream widens 4x at
every squeeze (revnet38: 32, 128, 512 channels instead of 32, 64, 112); the residual functions
of a stage wider than its preset become bottlenecks whose inner width is the preset's, so the
parameter count stays close to the preset's.

Shapes (``units`` per stage, ``channels`` = stem then each stage; bottleneck stages output 4x):

    resnet32   5-5-5     16-16-32-64          revnet38   3-3-3     32-32-64-112
    resnet110  18-18-18  16-16-32-64          revnet110  9-9-9     32-32-64-128
    resnet164  18-18-18  16-16-32-64 (bn)     revnet164  9-9-9     32-32-64-128 (bn)
    resnet101  3-4-23-3  64-64-128-256-512    revnet104  2-2-11-2  128-128-256-512-832
                                                                   (bn, ImageNet)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lit_rev.options import check_choice
from lit_rev.revnet.blocks import (
    DownsampleCoupling,
    InjectivePad,
    PoolPadShortcut,
    ResidualUnit,
    SpaceToDepth,
    residual_function,
)
from lit_rev.revnet.reversible import ReversibleBlock, ReversibleSequence

# The names of ARCHITECTURES (a test keeps the two equal).
Preset = Literal[
    "resnet32",
    "resnet110",
    "resnet164",
    "resnet101",
    "revnet38",
    "revnet110",
    "revnet164",
    "revnet104",
]


@dataclass(frozen=True)
class Architecture:
    """The shape of a network.

    Attributes:
        units: residual units per stage.
        channels: the stem's output channels, then each stage's (before the 4x of bottlenecks).
        bottleneck: bottleneck units (1x1, 3x3, 1x1) instead of basic ones (3x3, 3x3).
        imagenet: the ImageNet stem (7x7 stride-2 conv and a max-pool) instead of a 3x3 conv.
    """

    units: tuple[int, ...]
    channels: tuple[int, ...]
    bottleneck: bool
    imagenet: bool = False


ARCHITECTURES = {
    "resnet32": Architecture((5, 5, 5), (16, 16, 32, 64), False),
    "resnet110": Architecture((18, 18, 18), (16, 16, 32, 64), False),
    "resnet164": Architecture((18, 18, 18), (16, 16, 32, 64), True),
    "resnet101": Architecture((3, 4, 23, 3), (64, 64, 128, 256, 512), True, imagenet=True),
    "revnet38": Architecture((3, 3, 3), (32, 32, 64, 112), False),
    "revnet110": Architecture((9, 9, 9), (32, 32, 64, 128), False),
    "revnet164": Architecture((9, 9, 9), (32, 32, 64, 128), True),
    "revnet104": Architecture((2, 2, 11, 2), (128, 128, 256, 512, 832), True, imagenet=True),
}

# Parameter counts reported in Gomez et al. (2017), Tables 2 and 3.
PAPER_PARAMS = {
    "resnet32": 0.46e6,
    "resnet110": 1.73e6,
    "resnet164": 1.70e6,
    "resnet101": 44.5e6,
    "revnet38": 0.46e6,
    "revnet110": 1.73e6,
    "revnet164": 1.75e6,
    "revnet104": 45.2e6,
}


def _stem(in_channels: int, out_channels: int, imagenet: bool) -> nn.Sequential:
    """conv-BN-ReLU: 3x3 for CIFAR; 7x7 stride 2 then a 3x3 stride-2 max-pool for ImageNet."""
    conv = (
        nn.Conv2d(in_channels, out_channels, 7, 2, 3, bias=False)
        if imagenet
        else nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
    )
    layers = [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(3, 2, 1)) if imagenet else nn.Sequential(*layers)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class _ResidualNetwork(nn.Module):
    """stem -> body (a :class:`ReversibleSequence`) -> BN-ReLU-pool-linear head."""

    reversible: bool

    def __init__(
        self,
        preset: Preset,
        num_classes: int,
        memory_saving: bool,
        in_channels: int,
        units: list[int] | None,
        channels: list[int] | None,
        bottleneck: bool | None,
        imagenet_stem: bool | None,
        dropout: float,
        fully_reversible: bool = False,
    ):
        super().__init__()
        self.fully_reversible = fully_reversible
        check_choice("preset", preset, Preset)
        base = ARCHITECTURES[preset]
        arch = Architecture(
            tuple(units) if units is not None else base.units,
            tuple(channels) if channels is not None else base.channels,
            base.bottleneck if bottleneck is None else bottleneck,
            base.imagenet if imagenet_stem is None else imagenet_stem,
        )
        if len(arch.channels) != len(arch.units) + 1:
            raise ValueError(f"need one channel count for the stem and one per stage, got {arch}")
        self.arch = arch
        self.num_classes = num_classes
        widen = 4 if arch.bottleneck else 1
        self.stem = _stem(in_channels, arch.channels[0], arch.imagenet)
        blocks, width = [], arch.channels[0]
        for stage, (n, c) in enumerate(zip(arch.units, arch.channels[1:], strict=True)):
            stride = 1 if stage == 0 else 2
            for unit in range(n):
                unit_stride = stride if unit == 0 else 1
                out = self._width_after(width, c * widen, unit_stride)
                made = self._unit(
                    width,
                    out,
                    unit_stride,
                    arch.bottleneck,
                    stage == 0 and unit == 0,
                    dropout,
                    c * widen,
                )
                blocks.extend(made if isinstance(made, list) else [made])
                width = out
        self.body = ReversibleSequence(blocks, memory_saving=memory_saving)
        self.head = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, num_classes),
        )
        self.out_channels = width
        self._init_weights()

    def _unit(
        self, cin, cout, stride, bottleneck, first, dropout, preset_width
    ) -> nn.Module | list[nn.Module]:
        raise NotImplementedError

    def _width_after(self, cin: int, cout: int, stride: int) -> int:
        """Channels of the stream after a unit from ``cin`` to the preset's ``cout``."""
        return cout

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def memory_saving(self) -> bool:
        return self.body.memory_saving

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        self.body.memory_saving = bool(value)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, width)``: the head's BN-ReLU-pool, before its linear layer.

        Feature-based OOD detectors (Mahalanobis, KNN) read these; the logits are
        ``self.head[-1](self.features(x))``.
        """
        return self.head[:-1](self.body(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)``: the head's linear layer on :meth:`features`."""
        return self.head[-1](self.features(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class RevNet(_ResidualNetwork):
    """A reversible residual network (Gomez et al. 2017).

    Args:
        preset: ``revnet38``, ``revnet110``, ``revnet164`` (CIFAR) or ``revnet104`` (ImageNet);
            a ResNet preset gives a RevNet of that ResNet's shape.
        num_classes: size of the linear head.
        memory_saving: reconstruct activations in the backward instead of storing them.
        in_channels: image channels (1 for MNIST).
        units, channels, bottleneck, imagenet_stem: override the preset's shape (small test nets).
        dropout: dropout before the last conv of every residual function (0 in the paper).
        fully_reversible: replace the stored strided/widening units by a :class:`SpaceToDepth`
            squeeze and an :class:`InjectivePad` before a reversible block (i-RevNet), so that
            the memory-saving backward stores nothing of the body; the input's size after the
            stem must be divisible by ``2 ** (stages - 1)``.
    """

    reversible = True

    def __init__(
        self,
        preset: Preset = "revnet38",
        num_classes: int = 10,
        memory_saving: bool = True,
        in_channels: int = 3,
        units: list[int] | None = None,
        channels: list[int] | None = None,
        bottleneck: bool | None = None,
        imagenet_stem: bool | None = None,
        dropout: float = 0.0,
        fully_reversible: bool = False,
    ):
        super().__init__(
            preset,
            num_classes,
            memory_saving,
            in_channels,
            units,
            channels,
            bottleneck,
            imagenet_stem,
            dropout,
            fully_reversible,
        )

    def _width_after(self, cin: int, cout: int, stride: int) -> int:
        """The preset's width; fully reversible, at least the squeezed ``cin * stride**2``."""
        return max(cin * stride**2, cout) if self.fully_reversible else cout

    def _unit(self, cin, cout, stride, bottleneck, first, dropout, preset_width):
        if cin % 2 or cout % 2:
            raise ValueError(f"a reversible unit splits channels in halves; got {cin} -> {cout}")
        if self.fully_reversible:
            return self._bijective_unit(cin, cout, stride, bottleneck, first, dropout, preset_width)
        f = residual_function(
            cin // 2, cout // 2, stride, bottleneck, preactivate=not first, dropout=dropout
        )
        g = residual_function(cout // 2, cout // 2, 1, bottleneck, dropout=dropout)
        if stride == 1 and cin == cout:
            return ReversibleBlock(f, g)
        if bottleneck:
            return DownsampleCoupling(
                f,
                g,
                _projection(cin // 2, cout // 2, stride),
                _projection(cin // 2, cout // 2, stride),
            )
        return DownsampleCoupling(
            f,
            g,
            PoolPadShortcut(cin // 2, cout // 2, stride),
            PoolPadShortcut(cin // 2, cout // 2, stride),
        )

    @torch.no_grad()
    def inverse_body(self, y: torch.Tensor) -> torch.Tensor:
        """The body's input (the stem's output) rebuilt from the body's output ``y``.

        Only a fully reversible RevNet's body is a bijection; batch-norm running statistics
        are left untouched (in training mode the batch statistics of ``y``'s batch are used,
        as in the forward).
        """
        if not self.fully_reversible:
            raise ValueError(
                "inverse_body needs fully_reversible=True: with fully_reversible=False the "
                "strided units of the body are not invertible"
            )
        for block in reversed(self.body.blocks):
            y = block.inverse(y)
        return y

    @staticmethod
    def _bijective_unit(cin, cout, stride, bottleneck, first, dropout, preset_width) -> list:
        """Squeeze (if strided), pad (if still narrower than ``cout``), then a reversible block.

        F and G of a stream wider than the preset are bottlenecks at the preset's inner width
        (the preset's half width, or a quarter of it for bottleneck presets).
        """
        layers: list[nn.Module] = []
        width = cin
        if stride > 1:
            layers.append(SpaceToDepth(stride))
            width *= stride**2
        if cout > width:
            layers.append(InjectivePad(width, cout))
        half, preset_half = cout // 2, preset_width // 2
        wide = half > preset_half
        mid = (preset_half // 4 if bottleneck else preset_half) if wide else None
        f = residual_function(
            half,
            half,
            1,
            bottleneck or wide,
            preactivate=not first,
            dropout=dropout,
            mid_channels=mid,
        )
        g = residual_function(half, half, 1, bottleneck or wide, dropout=dropout, mid_channels=mid)
        return [*layers, ReversibleBlock(f, g)]


class ResNet(_ResidualNetwork):
    """A pre-activation ResNet (He et al. 2016), the paper's baseline.

    Shortcuts that change shape are pooled/zero-padded for basic units and 1x1 projections
    for bottleneck units. ``memory_saving=True`` recomputes each unit from its stored input
    (per-unit checkpointing); the paper's baseline is ``False``. Other args as :class:`RevNet`
    (``preset`` names ``resnet32``, ``resnet110``, ``resnet164`` or ``resnet101``; a RevNet
    preset gives a ResNet of that RevNet's shape).
    """

    reversible = False

    def __init__(
        self,
        preset: Preset = "resnet32",
        num_classes: int = 10,
        memory_saving: bool = False,
        in_channels: int = 3,
        units: list[int] | None = None,
        channels: list[int] | None = None,
        bottleneck: bool | None = None,
        imagenet_stem: bool | None = None,
        dropout: float = 0.0,
    ):
        super().__init__(
            preset,
            num_classes,
            memory_saving,
            in_channels,
            units,
            channels,
            bottleneck,
            imagenet_stem,
            dropout,
        )

    def _unit(self, cin, cout, stride, bottleneck, first, dropout, preset_width):
        f = residual_function(cin, cout, stride, bottleneck, preactivate=not first, dropout=dropout)
        if stride == 1 and cin == cout:
            return ResidualUnit(f)
        if bottleneck:
            return ResidualUnit(f, _projection(cin, cout, stride))
        return ResidualUnit(f, PoolPadShortcut(cin, cout, stride))


def resnet32(num_classes: int = 10, memory_saving: bool = False, **kwargs) -> ResNet:
    """ResNet-32 (CIFAR); other arguments as :class:`ResNet`."""
    return ResNet("resnet32", num_classes, memory_saving, **kwargs)


def resnet110(num_classes: int = 10, memory_saving: bool = False, **kwargs) -> ResNet:
    """ResNet-110 (CIFAR); other arguments as :class:`ResNet`."""
    return ResNet("resnet110", num_classes, memory_saving, **kwargs)


def resnet164(num_classes: int = 10, memory_saving: bool = False, **kwargs) -> ResNet:
    """ResNet-164 (CIFAR, bottleneck units); other arguments as :class:`ResNet`."""
    return ResNet("resnet164", num_classes, memory_saving, **kwargs)


def revnet38(num_classes: int = 10, memory_saving: bool = True, **kwargs) -> RevNet:
    """RevNet-38 (CIFAR), ResNet-32's counterpart; other arguments as :class:`RevNet`."""
    return RevNet("revnet38", num_classes, memory_saving, **kwargs)


def revnet110(num_classes: int = 10, memory_saving: bool = True, **kwargs) -> RevNet:
    """RevNet-110 (CIFAR), ResNet-110's counterpart; other arguments as :class:`RevNet`."""
    return RevNet("revnet110", num_classes, memory_saving, **kwargs)


def revnet164(num_classes: int = 10, memory_saving: bool = True, **kwargs) -> RevNet:
    """RevNet-164 (CIFAR), ResNet-164's counterpart; other arguments as :class:`RevNet`."""
    return RevNet("revnet164", num_classes, memory_saving, **kwargs)


def revnet104(num_classes: int = 1000, memory_saving: bool = True, **kwargs) -> RevNet:
    """RevNet-104 (ImageNet), ResNet-101's counterpart; other args as :class:`RevNet`."""
    return RevNet("revnet104", num_classes, memory_saving, **kwargs)


def build(preset: Preset, **kwargs) -> nn.Module:
    """``RevNet`` or ``ResNet`` from a preset name; keyword arguments as those classes."""
    return (RevNet if preset.startswith("revnet") else ResNet)(preset, **kwargs)

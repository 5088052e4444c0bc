"""Pre-activation residual functions and the units built from them.

The residual units of He et al. (2016) and the RevNet couplings of Gomez et al. (2017).

A residual function is BN-ReLU-conv repeated: two 3x3 convolutions (basic) or 1x1, 3x3, 1x1
with a 4x narrower middle (bottleneck). Only its first convolution is strided, as in the
official RevNet code. The very first unit of a network skips the leading BN-ReLU (the stem
already ends with one).

For fully reversible RevNets (i-RevNet, Jacobsen et al. 2018) the strided unit of a stage is
replaced by two parameter-free bijections, :class:`SpaceToDepth` (a 2x2 squeeze) and
:class:`InjectivePad` (zero channels appended), followed by an ordinary reversible block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_rev.revnet.reversible import InvertibleLayer


def _preact(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def residual_function(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    bottleneck: bool = False,
    preactivate: bool = True,
    dropout: float = 0.0,
    mid_channels: int | None = None,
) -> nn.Sequential:
    """BN-ReLU-conv layers from ``in_channels`` to ``out_channels``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (a bottleneck's middle is 4x narrower).
        stride: stride of the first convolution (the only strided one).
        bottleneck: 1x1, 3x3, 1x1 convolutions instead of two 3x3 ones.
        preactivate: start with BN-ReLU; ``False`` for the network's very first unit, whose
            input already went through the stem's BN-ReLU.
        dropout: dropout probability before the last convolution (0: none).
        mid_channels: width inside the function (default: a quarter of ``out_channels`` for a
            bottleneck, ``out_channels`` otherwise); a fully reversible RevNet's wide stages
            set it so that their convolutions keep the preset's width.
    """
    layers = _preact(in_channels) if preactivate else []
    if bottleneck:
        mid = mid_channels or out_channels // 4
        layers += [nn.Conv2d(in_channels, mid, 1, stride, bias=False), *_preact(mid)]
        layers += [nn.Conv2d(mid, mid, 3, 1, 1, bias=False), *_preact(mid)]
    else:
        mid = mid_channels or out_channels
        layers += [nn.Conv2d(in_channels, mid, 3, stride, 1, bias=False), *_preact(mid)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(
        nn.Conv2d(mid, out_channels, 1 if bottleneck else 3, 1, 0 if bottleneck else 1, bias=False)
    )
    return nn.Sequential(*layers)


class PoolPadShortcut(nn.Module):
    """Parameter-free shortcut: average-pool by ``stride``, then zero-pad the extra channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"cannot shrink channels {in_channels} -> {out_channels} without parameters"
            )
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` pooled to the output resolution, with zero channels appended."""
        if self.stride > 1:
            # ceil_mode matches the output size of a stride-s, padding-1 3x3 conv on odd inputs.
            x = F.avg_pool2d(x, self.stride, ceil_mode=True, count_include_pad=False)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class ResidualUnit(nn.Module):
    """``shortcut(x) + F(x)``: one unit of a pre-activation ResNet.

    Args:
        f: the residual function.
        shortcut: the skip connection; ``None`` is the identity.
    """

    def __init__(self, f: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.f = f
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unit's output, ``shortcut(x) + F(x)``."""
        return self.shortcut(x) + self.f(x)


class DownsampleCoupling(nn.Module):
    """The strided (or widening) first unit of a RevNet stage.

    It is not invertible, so the memory-saving backward stores its input.

    Same coupling as :class:`~lit_rev.revnet.reversible.ReversibleBlock`, with each half's
    skip connection reshaped: ``y1 = S1(x1) + F(x2)``, ``y2 = S2(x2) + G(y1)``. S1, S2 are
    pool-and-pad (basic units) or two separate strided 1x1 projections (bottleneck units).
    """

    def __init__(self, f: nn.Module, g: nn.Module, shortcut1: nn.Module, shortcut2: nn.Module):
        super().__init__()
        self.f = f
        self.g = g
        self.shortcut1 = shortcut1
        self.shortcut2 = shortcut2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(y1, y2)`` concatenated on channels, from the channel halves of ``x``."""
        x1, x2 = x.chunk(2, dim=1)
        y1 = self.shortcut1(x1) + self.f(x2)
        y2 = self.shortcut2(x2) + self.g(y1)
        return torch.cat((y1, y2), dim=1)


class SpaceToDepth(InvertibleLayer):
    """Invertible squeeze: each 2x2 patch becomes 4 channels, ``(N, C, H, W) -> (N, 4C, H/2, W/2)``.

    Channel ``c`` of the input becomes channels ``4c .. 4c+3``, so the two channel halves of
    the input become the two channel halves of the output (a reversible block's split is
    kept). Parameter-free and exactly invertible, it halves the resolution without storing
    anything, in place of a strided convolution (Jacobsen et al. 2018).

    Args:
        factor: side of the patch that becomes channels (``factor**2`` of them per channel).
    """

    def __init__(self, factor: int = 2):
        super().__init__()
        if factor < 2:
            raise ValueError(f"SpaceToDepth factor must be >= 2, got factor={factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with every ``factor x factor`` patch moved onto channels."""
        height, width = x.shape[-2:]
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"SpaceToDepth(factor={self.factor}) needs a height and width divisible by "
                f"{self.factor}, got {height}x{width}: give the fully reversible network inputs "
                f"whose size after the stem is divisible by {self.factor}**(stages - 1), or use "
                "fully_reversible=False"
            )
        return F.pixel_unshuffle(x, self.factor)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input that gave ``y`` (channels moved back onto ``factor x factor`` patches)."""
        return F.pixel_shuffle(y, self.factor)

    def extra_repr(self) -> str:
        """``factor=...`` in the module's printout."""
        return f"factor={self.factor}"


class InjectivePad(InvertibleLayer):
    """Widen by zero channels appended to each channel half: ``(x1, x2) -> (x1, 0, x2, 0)``.

    The i-RevNet channel change (Jacobsen et al. 2018): injective, so the inverse (dropping the
    zero channels) is exact on its image, and parameter-free. Padding each half, rather than
    the end, keeps information in both halves of the next reversible block.

    Args:
        in_channels: channels of the input (even).
        out_channels: channels of the output (even, at least ``in_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels % 2 or out_channels % 2 or out_channels < in_channels:
            raise ValueError(
                f"InjectivePad pads each channel half, so it needs even channel counts with "
                f"out_channels >= in_channels; got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``'s two channel halves, each followed by its share of zero channels."""
        extra = (self.out_channels - self.in_channels) // 2
        pad = (0, 0) * (x.dim() - 2) + (0, extra)
        return torch.cat([F.pad(half, pad) for half in x.chunk(2, dim=1)], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input that gave ``y``: each half without its zero channels."""
        keep = self.in_channels // 2
        return torch.cat([half[:, :keep] for half in y.chunk(2, dim=1)], dim=1)

    def extra_repr(self) -> str:
        """``in_channels -> out_channels`` in the module's printout."""
        return f"{self.in_channels} -> {self.out_channels}"

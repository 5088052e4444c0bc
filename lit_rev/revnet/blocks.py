"""Pre-activation residual functions and the units built from them.

The residual units of He et al. (2016) and the RevNet couplings of Gomez et al. (2017).

A residual function is BN-ReLU-conv repeated: two 3x3 convolutions (basic) or 1x1, 3x3, 1x1
with a 4x narrower middle (bottleneck). Only its first convolution is strided, as in the
official RevNet code. The very first unit of a network skips the leading BN-ReLU (the stem
already ends with one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _preact(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def residual_function(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    bottleneck: bool = False,
    preactivate: bool = True,
    dropout: float = 0.0,
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
    """
    layers = _preact(in_channels) if preactivate else []
    if bottleneck:
        mid = out_channels // 4
        layers += [nn.Conv2d(in_channels, mid, 1, stride, bias=False), *_preact(mid)]
        layers += [nn.Conv2d(mid, mid, 3, 1, 1, bias=False), *_preact(mid)]
    else:
        mid = out_channels
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

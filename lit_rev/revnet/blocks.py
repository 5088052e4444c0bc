"""Pre-activation residual functions and the units built from them (He et al. 2016, Gomez et al. 2017).

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
    """BN-ReLU-conv layers from ``in_channels`` to ``out_channels``; optional dropout before the last conv."""
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
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # ceil_mode matches the output size of a stride-s, padding-1 3x3 conv on odd inputs.
            x = F.avg_pool2d(x, self.stride, ceil_mode=True, count_include_pad=False)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class ResidualUnit(nn.Module):
    """``shortcut(x) + F(x)``: one unit of a pre-activation ResNet (identity shortcut when ``None``)."""

    def __init__(self, f: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.f = f
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.f(x)


class DownsampleCoupling(nn.Module):
    """The strided (or widening) first unit of a RevNet stage; not invertible, so its input is stored.

    Same coupling as :class:`~lit_rev.revnet.reversible.ReversibleBlock`, with each half's
    skip connection reshaped: ``y1 = S1(x1) + F(x2)``, ``y2 = S2(x2) + G(y1)``. S1, S2 are
    pool-and-pad (basic units) or two separate strided 1x1 projections (bottleneck units).
    """

    def __init__(self, f: nn.Module, g: nn.Module, shortcut1: nn.Module, shortcut2: nn.Module):
        super().__init__()
        self.f, self.g, self.shortcut1, self.shortcut2 = f, g, shortcut1, shortcut2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y1 = self.shortcut1(x1) + self.f(x2)
        y2 = self.shortcut2(x2) + self.g(y1)
        return torch.cat((y1, y2), dim=1)

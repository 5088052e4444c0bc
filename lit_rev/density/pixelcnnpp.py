"""PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017) as a plain ``nn.Module``.

An autoregressive model over quantised pixels in raster order,

    log P(k) = sum_i log P(k_i | k_<i),

each conditional a discretised logistic mixture (:mod:`lit_rev.density.discretized`) whose
parameters a convolutional network computes from the pixels above and to the left only.
Two streams keep it causal without blind spots: ``u`` sees every row above (down-shifted
convolutions), ``ul`` also the pixels to the left in the current row (down-right-shifted
convolutions). Gated ResNet blocks, a U-Net of ``scales`` resolutions with short-cuts from
the up pass into the down pass, and dropout follow the paper; weight normalisation is left
out (plain convolutions train fine with Adam at the paper's learning rate).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_rev.density.discretized import (
    discretized_mixture_log_prob,
    mixture_param_count,
    sample_discretized_mixture,
    to_unit_range,
)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (zeros in the top row): row ``i`` then only sees rows ``< i``."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (zeros in the left column)."""
    return F.pad(x, (1, 0))[:, :, :, :-1]


class DownShiftedConv2d(nn.Module):
    """Convolution whose output at ``(i, j)`` sees rows ``<= i`` only (a ``kh x kw`` window ending at row ``i``, centred on ``j``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(2, 3), stride: int = 1):
        super().__init__()
        kh, kw = kernel
        self.pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)  # left, right, top, bottom
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class DownRightShiftedConv2d(nn.Module):
    """Convolution whose output at ``(i, j)`` sees rows ``<= i`` and columns ``<= j`` only."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(2, 2), stride: int = 1):
        super().__init__()
        kh, kw = kernel
        self.pad = (kw - 1, 0, kh - 1, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride)

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class ShiftedDeconv2d(nn.Module):
    """Stride-2 transposed convolution (x2 upsampling) cropped so it stays down-shifted
    (``kernel=(2, 3)``, centred columns) or down-right-shifted (``right=True``, ``kernel=(2, 2)``)."""

    def __init__(self, in_channels: int, out_channels: int, right: bool = False):
        super().__init__()
        self.kernel = (2, 2) if right else (2, 3)
        self.right = right
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, self.kernel, stride=2, output_padding=1)

    def forward(self, x):
        kh, kw = self.kernel
        y = self.deconv(x)
        h, w = y.shape[-2:]
        left = 0 if self.right else (kw - 1) // 2
        return y[:, :, : h - kh + 1, left : w - (kw - 1) + left]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])``: PixelCNN++'s nonlinearity (keeps both signs' information)."""
    return F.elu(torch.cat([x, -x], 1))


class GatedResnet(nn.Module):
    """``x + a * sigmoid(b)``, ``(a, b) = conv(concat_elu(conv(concat_elu(x)) + nin(concat_elu(skip))))``."""

    def __init__(self, channels: int, conv: type, skip_inputs: int = 0, dropout: float = 0.5):
        super().__init__()
        self.conv_in = conv(2 * channels, channels)
        self.skip = nn.Conv2d(2 * skip_inputs * channels, channels, 1) if skip_inputs else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv(2 * channels, 2 * channels)

    def forward(self, x, skip=None):
        h = self.conv_in(concat_elu(x))
        if skip is not None:
            h = h + self.skip(concat_elu(skip))
        h = self.conv_out(self.dropout(concat_elu(h)))
        a, b = h.chunk(2, 1)
        return x + a * torch.sigmoid(b)


class PixelCNNPP(nn.Module):
    """PixelCNN++ over ``in_channels x image_size x image_size`` images of ``n_bits`` bits.

    Paper size (CIFAR-10): ``resnets_per_scale=5, filters=160, num_mixtures=10, scales=3,
    dropout=0.5``. ``log_prob(k)`` takes integer images ``k`` in ``[0, 2**n_bits)`` and returns
    the exact log-probability mass ``log P(k)`` (natural log, ``(N,)``).
    """

    #: ``log_prob`` is a log-probability *mass* of integer images (see :class:`~lit_rev.density.DensityModule`).
    likelihood = "mass"
    #: sampling needs one network pass per pixel: :class:`DensityModule` skips sample grids under ``fast_dev_run``.
    sequential_sampling = True

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        n_bits: int = 8,
        resnets_per_scale: int = 5,
        filters: int = 160,
        num_mixtures: int = 10,
        scales: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        if image_size % 2 ** (scales - 1):
            raise ValueError(f"image_size {image_size} must be divisible by 2**(scales-1) = {2 ** (scales - 1)}")
        self.in_channels, self.image_size, self.n_bits = in_channels, image_size, n_bits
        self.num_mixtures, self.scales = num_mixtures, scales
        f, c = filters, in_channels + 1  # + a channel of ones, so zero padding is distinguishable from data
        down = lambda i, o: DownShiftedConv2d(i, o, (2, 3))  # noqa: E731
        down_right = lambda i, o: DownRightShiftedConv2d(i, o, (2, 2))  # noqa: E731

        self.u_init = DownShiftedConv2d(c, f, (2, 3))
        self.ul_init_up = DownShiftedConv2d(c, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv2d(c, f, (2, 1))
        self.up_u = nn.ModuleList()
        self.up_ul = nn.ModuleList()
        self.down_u = nn.ModuleList()
        self.down_ul = nn.ModuleList()
        for scale in range(scales):
            self.up_u.append(nn.ModuleList(GatedResnet(f, down, 0, dropout) for _ in range(resnets_per_scale)))
            self.up_ul.append(nn.ModuleList(GatedResnet(f, down_right, 1, dropout) for _ in range(resnets_per_scale)))
            n_down = resnets_per_scale if scale == 0 else resnets_per_scale + 1
            self.down_u.append(nn.ModuleList(GatedResnet(f, down, 1, dropout) for _ in range(n_down)))
            self.down_ul.append(nn.ModuleList(GatedResnet(f, down_right, 2, dropout) for _ in range(n_down)))
        self.downsize_u = nn.ModuleList(DownShiftedConv2d(f, f, (2, 3), stride=2) for _ in range(scales - 1))
        self.downsize_ul = nn.ModuleList(DownRightShiftedConv2d(f, f, (2, 2), stride=2) for _ in range(scales - 1))
        self.upsize_u = nn.ModuleList(ShiftedDeconv2d(f, f) for _ in range(scales - 1))
        self.upsize_ul = nn.ModuleList(ShiftedDeconv2d(f, f, right=True) for _ in range(scales - 1))
        self.out = nn.Conv2d(f, mixture_param_count(in_channels, num_mixtures), 1)

    @property
    def num_dims(self) -> int:
        return self.in_channels * self.image_size**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture parameters ``(N, P, H, W)`` from pixels in ``[-1, 1]``; position ``i`` depends on positions ``< i`` only."""
        x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        us = [down_shift(self.u_init(x))]
        uls = [down_shift(self.ul_init_up(x)) + right_shift(self.ul_init_left(x))]
        for scale in range(self.scales):  # up pass: remember every activation for the down pass
            for block_u, block_ul in zip(self.up_u[scale], self.up_ul[scale]):
                us.append(block_u(us[-1]))
                uls.append(block_ul(uls[-1], us[-1]))
            if scale < self.scales - 1:
                us.append(self.downsize_u[scale](us[-1]))
                uls.append(self.downsize_ul[scale](uls[-1]))
        u, ul = us.pop(), uls.pop()
        for scale in range(self.scales):  # down pass, fed by the up pass in reverse
            for block_u, block_ul in zip(self.down_u[scale], self.down_ul[scale]):
                u = block_u(u, us.pop())
                ul = block_ul(ul, torch.cat([u, uls.pop()], 1))
            if scale < self.scales - 1:
                u, ul = self.upsize_u[scale](u), self.upsize_ul[scale](ul)
        return self.out(F.elu(ul))

    def log_prob(self, k: torch.Tensor) -> torch.Tensor:
        """``log P(k) = sum_i log P(k_i | k_<i)`` of integer images ``(N, C, H, W)``, shape ``(N,)``."""
        params = self(to_unit_range(k, self.n_bits, self.out.weight.dtype))
        return discretized_mixture_log_prob(k, params, self.num_mixtures, self.n_bits)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` integer images, one pixel at a time in raster order (``H * W`` network passes).

        ``temperature`` is accepted for a common interface and ignored (ancestral sampling).
        """
        device = self.out.weight.device
        k = torch.zeros(n, self.in_channels, self.image_size, self.image_size, dtype=torch.long, device=device)
        for i in range(self.image_size):
            for j in range(self.image_size):
                params = self(to_unit_range(k, self.n_bits, self.out.weight.dtype))[:, :, i : i + 1, j : j + 1]
                k[:, :, i : i + 1, j : j + 1] = sample_discretized_mixture(params, self.in_channels, self.num_mixtures, self.n_bits)
        return k

"""PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017) as a plain ``nn.Module``.

An autoregressive model over quantised pixels in raster order,

    log P(k) = sum_i log P(k_i | k_<i),

each conditional a discretised logistic mixture (:mod:`lit_rev.density.discretized`) whose
parameters a convolutional network computes from the pixels above and to the left only.
Two streams keep it causal without blind spots: ``u`` sees every row above (down-shifted
convolutions), ``ul`` also the pixels to the left in the current row (down-right-shifted
convolutions). Gated ResNet blocks, a U-Net of ``scales`` resolutions with short-cuts from
the up pass into the down pass, and dropout follow the paper.

With ``weight_norm=True`` every convolution is weight-normalised with data-dependent
initialisation, as in openai/pixel-cnn (Salimans & Kingma 2016): ``w = g v / ||v||`` and, on
the first training batch, ``g`` and the bias are set so that each layer's output has zero
mean and standard deviation ``init_scale`` per channel (0.1 for the gated ResNet's last
convolution, so every block starts close to the identity). Off by default (plain
convolutions); the paper configs switch it on.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

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


class WeightNorm(nn.Module):
    """Weight normalisation ``w = g v / ||v||`` (Salimans & Kingma 2016) with data-dependent init.

    Wraps a ``Conv2d``, ``ConvTranspose2d`` or ``Linear`` ``layer``; ``g`` and the bias are
    initialised from the first training batch.

    ``v`` is ``layer.weight`` (drawn from ``N(0, 0.05^2)`` as openai/pixel-cnn, which sets how
    fast Adam turns its direction), ``||v||`` its norm over everything but the output channel,
    ``g`` one gain per output channel. On the first forward in training mode, :meth:`initialize`
    sets ``g = init_scale / std`` and ``bias = -mean * g`` from the per-channel moments of
    ``conv(x, v / ||v||)`` on that batch, so the layer's output has zero mean and standard
    deviation ``init_scale`` per channel there. Like :class:`~lit_rev.density.flows.ActNorm`, the
    moments are averaged over all ``torch.distributed`` ranks first (every rank ends with the
    same parameters), and the ``initialized`` buffer travels in checkpoints, so a loaded model
    is never re-initialised. Before initialisation ``g`` is the norm of PyTorch's default init of
    ``layer``, so an untrained model (evaluated without a checkpoint) keeps the scale of plain
    convolutions instead of growing ``0.05 sqrt(fan_in)``-fold per layer to inf.
    """

    def __init__(self, layer: nn.Module, init_scale: float = 1.0, eps: float = 1e-8):
        super().__init__()
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) or layer.bias is None:
            raise TypeError(
                f"WeightNorm wraps a Conv2d, ConvTranspose2d or Linear with a bias, got {layer!r}"
            )
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {init_scale}")
        self.layer = layer
        self.init_scale = float(init_scale)
        self.eps = eps
        self.out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0  # weight (in, out, kh, kw)
        with torch.no_grad():
            self.g = nn.Parameter(self._direction_norm())  # of PyTorch's default init
            nn.init.normal_(layer.weight, 0.0, 0.05)
        self.register_buffer("initialized", torch.tensor(False))
        self._known_initialized = False  # the buffer's value once read: no GPU sync per forward

    def _load_from_state_dict(self, *args, **kwargs):
        self._known_initialized = False  # the loaded flag is read again on the next forward
        super()._load_from_state_dict(*args, **kwargs)

    def _direction_norm(self) -> torch.Tensor:
        v = self.layer.weight
        return torch.linalg.vector_norm(v, dim=[d for d in range(v.dim()) if d != self.out_dim])

    def _per_output(self, t: torch.Tensor) -> torch.Tensor:
        shape = [1] * self.layer.weight.dim()
        shape[self.out_dim] = -1
        return t.view(shape)

    def weight(self) -> torch.Tensor:
        """The effective weight ``g v / ||v||`` (differentiable in ``g`` and ``v``)."""
        return self.layer.weight * self._per_output(self.g / self._direction_norm())

    def _layer_call(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        return functional_call(self.layer, {"weight": weight, "bias": bias}, (x,))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set ``g`` and the bias from the batch ``x`` (output channels are dim 1 of the output)."""
        direction = self.layer.weight / self._per_output(self._direction_norm())
        y = self._layer_call(x, direction, torch.zeros_like(self.layer.bias)).double()
        dims = [d for d in range(y.dim()) if d != 1]
        moments = torch.stack([y.mean(dims), (y * y).mean(dims)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, var = moments[0], (moments[1] - moments[0] ** 2).clamp_min(0)
        scale = self.init_scale / torch.sqrt(var + self.eps)
        self.g.copy_(scale)
        self.layer.bias.copy_(-mean * scale)
        self.initialized.fill_(True)
        self._known_initialized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer with weight ``g v / ||v||`` (initialising on the first training batch)."""
        if self.training and not self._known_initialized:
            if bool(self.initialized):
                self._known_initialized = True
            else:
                self.initialize(x)
        return self._layer_call(x, self.weight(), self.layer.bias)


def _maybe_weight_norm(layer: nn.Module, weight_norm: bool, init_scale: float = 1.0) -> nn.Module:
    return WeightNorm(layer, init_scale) if weight_norm else layer


class DownShiftedConv2d(nn.Module):
    """Convolution whose output at ``(i, j)`` sees rows ``<= i`` only.

    A ``kh x kw`` window ending at row ``i``, centred on column ``j``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(2, 3),
        stride: int = 1,
        weight_norm: bool = False,
        init_scale: float = 1.0,
    ):
        super().__init__()
        kh, kw = kernel
        self.pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)  # left, right, top, bottom
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride)
        self.conv = _maybe_weight_norm(conv, weight_norm, init_scale)

    def forward(self, x):
        """Pad so the window stays causal, then convolve (same size out for stride 1)."""
        return self.conv(F.pad(x, self.pad))


class DownRightShiftedConv2d(nn.Module):
    """Convolution whose output at ``(i, j)`` sees rows ``<= i`` and columns ``<= j`` only."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(2, 2),
        stride: int = 1,
        weight_norm: bool = False,
        init_scale: float = 1.0,
    ):
        super().__init__()
        kh, kw = kernel
        self.pad = (kw - 1, 0, kh - 1, 0)
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride)
        self.conv = _maybe_weight_norm(conv, weight_norm, init_scale)

    def forward(self, x):
        """Pad so the window stays causal, then convolve (same size out for stride 1)."""
        return self.conv(F.pad(x, self.pad))


class ShiftedDeconv2d(nn.Module):
    """Stride-2 transposed convolution (x2 upsampling), cropped so it stays causal.

    Down-shifted (``kernel=(2, 3)``, centred columns) or down-right-shifted (``right=True``,
    ``kernel=(2, 2)``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, right: bool = False, weight_norm: bool = False
    ):
        super().__init__()
        self.kernel = (2, 2) if right else (2, 3)
        self.right = right
        deconv = nn.ConvTranspose2d(in_channels, out_channels, self.kernel, 2, output_padding=1)
        self.deconv = _maybe_weight_norm(deconv, weight_norm)

    def forward(self, x):
        """Upsample ``x`` twofold and crop the rows and columns that would see the future."""
        kh, kw = self.kernel
        y = self.deconv(x)
        h, w = y.shape[-2:]
        left = 0 if self.right else (kw - 1) // 2
        return y[:, :, : h - kh + 1, left : w - (kw - 1) + left]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])``: PixelCNN++'s nonlinearity (keeps both signs' information)."""
    return F.elu(torch.cat([x, -x], 1))


class GatedResnet(nn.Module):
    """PixelCNN++'s gated ResNet block: ``x + a * sigmoid(b)``.

    ``(a, b) = conv(concat_elu(conv(concat_elu(x)) + nin(concat_elu(skip))))``, with dropout
    before the second convolution.

    ``conv(in, out, init_scale)`` builds the shifted convolutions; with ``weight_norm`` the
    last one (the gate) is initialised to output scale ``GATE_INIT_SCALE`` (openai/pixel-cnn).
    """

    #: data-dependent output scale of the gate convolution (openai/pixel-cnn's ``init_scale=0.1``)
    GATE_INIT_SCALE = 0.1

    def __init__(
        self,
        channels: int,
        conv,
        skip_inputs: int = 0,
        dropout: float = 0.5,
        weight_norm: bool = False,
    ):
        super().__init__()
        self.conv_in = conv(2 * channels, channels, 1.0)
        nin = nn.Conv2d(2 * skip_inputs * channels, channels, 1) if skip_inputs else None
        self.skip = _maybe_weight_norm(nin, weight_norm) if nin is not None else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = conv(2 * channels, 2 * channels, self.GATE_INIT_SCALE)

    def forward(self, x, skip=None):
        """The gated residual of ``x``, fed by the short-cut input ``skip`` where given."""
        h = self.conv_in(concat_elu(x))
        if skip is not None:
            h = h + self.skip(concat_elu(skip))
        h = self.conv_out(self.dropout(concat_elu(h)))
        a, b = h.chunk(2, 1)
        return x + a * torch.sigmoid(b)


class PixelCNNPP(nn.Module):
    """PixelCNN++ over ``in_channels x image_size x image_size`` images of ``n_bits`` bits.

    Paper size (CIFAR-10): ``resnets_per_scale=5, filters=160, num_mixtures=10, scales=3,
    dropout=0.5, weight_norm=True``. ``log_prob(k)`` takes integer images ``k`` in
    ``[0, 2**n_bits)`` and returns the exact log-probability mass ``log P(k)``
    (natural log, ``(N,)``).

    Args:
        in_channels: channels of the images.
        image_size: height and width; divisible by ``2**(scales - 1)``.
        n_bits: bits per pixel value.
        resnets_per_scale: gated ResNet blocks per resolution in the up pass (one more in the
            down pass, except at the coarsest resolution).
        filters: channels of every block.
        num_mixtures: logistics in each pixel's mixture.
        scales: resolutions of the U-Net, each half the previous.
        dropout: dropout rate inside the gated ResNet blocks.
        weight_norm: weight-normalise every convolution with data-dependent init on the first
            training batch (:class:`WeightNorm`), as the reference implementation; ``False``
            keeps plain convolutions.
    """

    #: ``log_prob`` is a log-probability *mass* of integer images (see
    #: :class:`~lit_rev.density.DensityModule`).
    likelihood = "mass"
    #: sampling needs one network pass per pixel: :class:`DensityModule` skips sample grids
    #: under ``fast_dev_run``.
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
        weight_norm: bool = False,
    ):
        super().__init__()
        if image_size % 2 ** (scales - 1):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**(scales-1) = {2 ** (scales - 1)}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.n_bits = n_bits
        self.num_mixtures = num_mixtures
        self.scales = scales
        self.weight_norm = weight_norm
        f = filters
        c = in_channels + 1  # + a channel of ones, so zero padding is distinguishable from data
        wn = weight_norm

        def down(i, o, s=1.0):
            return DownShiftedConv2d(i, o, (2, 3), weight_norm=wn, init_scale=s)

        def down_right(i, o, s=1.0):
            return DownRightShiftedConv2d(i, o, (2, 2), weight_norm=wn, init_scale=s)

        def blocks(conv, skip_inputs, n):
            return nn.ModuleList(GatedResnet(f, conv, skip_inputs, dropout, wn) for _ in range(n))

        self.u_init = DownShiftedConv2d(c, f, (2, 3), weight_norm=wn)
        self.ul_init_up = DownShiftedConv2d(c, f, (1, 3), weight_norm=wn)
        self.ul_init_left = DownRightShiftedConv2d(c, f, (2, 1), weight_norm=wn)
        self.up_u = nn.ModuleList()
        self.up_ul = nn.ModuleList()
        self.down_u = nn.ModuleList()
        self.down_ul = nn.ModuleList()
        for scale in range(scales):
            self.up_u.append(blocks(down, 0, resnets_per_scale))
            self.up_ul.append(blocks(down_right, 1, resnets_per_scale))
            n_down = resnets_per_scale if scale == 0 else resnets_per_scale + 1
            self.down_u.append(blocks(down, 1, n_down))
            self.down_ul.append(blocks(down_right, 2, n_down))
        n = scales - 1
        self.downsize_u = nn.ModuleList(DownShiftedConv2d(f, f, (2, 3), 2, wn) for _ in range(n))
        self.downsize_ul = nn.ModuleList(
            DownRightShiftedConv2d(f, f, (2, 2), 2, wn) for _ in range(n)
        )
        self.upsize_u = nn.ModuleList(ShiftedDeconv2d(f, f, weight_norm=wn) for _ in range(n))
        self.upsize_ul = nn.ModuleList(ShiftedDeconv2d(f, f, True, wn) for _ in range(n))
        out = nn.Conv2d(f, mixture_param_count(in_channels, num_mixtures), 1)
        self.out = _maybe_weight_norm(out, wn)

    @property
    def num_dims(self) -> int:
        """Dimensions ``D`` of one image (``C * H * W``)."""
        return self.in_channels * self.image_size**2

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture parameters ``(N, P, H, W)`` from pixels in ``[-1, 1]``.

        The parameters at position ``i`` (raster order) depend on the pixels before ``i`` only.
        """
        x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        us = [down_shift(self.u_init(x))]
        uls = [down_shift(self.ul_init_up(x)) + right_shift(self.ul_init_left(x))]
        for scale in range(self.scales):  # up pass: remember every activation for the down pass
            for block_u, block_ul in zip(self.up_u[scale], self.up_ul[scale], strict=True):
                us.append(block_u(us[-1]))
                uls.append(block_ul(uls[-1], us[-1]))
            if scale < self.scales - 1:
                us.append(self.downsize_u[scale](us[-1]))
                uls.append(self.downsize_ul[scale](uls[-1]))
        u, ul = us.pop(), uls.pop()
        for scale in range(self.scales):  # down pass, fed by the up pass in reverse
            for block_u, block_ul in zip(self.down_u[scale], self.down_ul[scale], strict=True):
                u = block_u(u, us.pop())
                ul = block_ul(ul, torch.cat([u, uls.pop()], 1))
            if scale < self.scales - 1:
                u, ul = self.upsize_u[scale](u), self.upsize_ul[scale](ul)
        return self.out(F.elu(ul))

    def log_prob(self, k: torch.Tensor) -> torch.Tensor:
        """``log P(k) = sum_i log P(k_i | k_<i)`` of integer images ``(N, C, H, W)``: ``(N,)``."""
        params = self(to_unit_range(k, self.n_bits, self._dtype()))
        return discretized_mixture_log_prob(k, params, self.num_mixtures, self.n_bits)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` integer images, one pixel at a time in raster order (``H * W`` network passes).

        ``temperature`` is accepted for a common interface and ignored (ancestral sampling).
        """
        device, dtype = next(self.parameters()).device, self._dtype()
        k = torch.zeros(
            n, self.in_channels, self.image_size, self.image_size, dtype=torch.long, device=device
        )
        for i in range(self.image_size):
            for j in range(self.image_size):
                params = self(to_unit_range(k, self.n_bits, dtype))[:, :, i : i + 1, j : j + 1]
                k[:, :, i : i + 1, j : j + 1] = sample_discretized_mixture(
                    params, self.in_channels, self.num_mixtures, self.n_bits
                )
        return k

"""Glow (Kingma & Dhariwal 2018) as used by Nalisnick et al. 2019, as a plain ``nn.Module``.

``x`` is a continuous image (dequantised pixels scaled to ``[-0.5, 0.5)``). The multi-scale
architecture: at each level, squeeze then ``steps`` x (ActNorm, 1x1 conv, coupling); every
level but the last splits off half the channels with a prior conditioned on the rest; the
last level's output has a learned Gaussian prior. Each level's steps are one
:class:`~lit_rev.density.flows.FlowSequence`, which chains them and sums their log-dets; the
squeezes, splits and priors between levels are :class:`Glow`'s.

    log p(x) = log p(z) + log|det dz/dx|
               ^ "density" term   ^ "volume" term (0 for additive coupling: CV-Glow)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lit_rev.density.flows import (
    FlowCoupling,
    FlowSequence,
    FlowStep,
    SplitPrior,
    Squeeze,
    gaussian_log_prob,
)
from lit_rev.options import check_choice


class Glow(nn.Module):
    """Multi-scale Glow over ``in_channels x image_size x image_size`` continuous images.

    Args:
        in_channels: channels of the images.
        image_size: height and width; divisible by ``2**levels``.
        levels: resolutions; each squeezes, and each but the last splits off half its channels.
        steps: flow steps (ActNorm, 1x1 convolution, coupling) per level.
        hidden_channels: width of every coupling network.
        coupling: ``"affine"`` (Glow) or ``"additive"`` (volume preserving: CV-Glow).
        lu: LU-parametrised 1x1 convolutions (cheap log-det) instead of a full matrix.
        learn_top: learn the top prior's mean and log-std (else fixed at ``N(0, I)``).
    """

    #: ``log_prob`` is a log-*density* of continuous input (see
    #: :class:`~lit_rev.density.DensityModule`).
    likelihood = "density"

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        levels: int = 3,
        steps: int = 32,
        hidden_channels: int = 512,
        coupling: FlowCoupling = "affine",
        lu: bool = True,
        learn_top: bool = True,
    ):
        super().__init__()
        check_choice("coupling", coupling, FlowCoupling)
        if image_size % (2**levels):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**levels = {2**levels}"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.coupling = coupling
        self.squeeze = Squeeze()
        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        c, s = in_channels, image_size
        self.latent_shapes: list[tuple[int, int, int]] = []
        for level in range(levels):
            c, s = 4 * c, s // 2
            self.levels.append(
                FlowSequence(FlowStep(c, hidden_channels, coupling, lu) for _ in range(steps))
            )
            if level < levels - 1:
                self.splits.append(SplitPrior(c))
                self.latent_shapes.append((c - c // 2, s, s))
                c = c // 2
        self.latent_shapes.append((c, s, s))
        self.top_mean = nn.Parameter(torch.zeros(1, c, s, s), requires_grad=learn_top)
        self.top_log_std = nn.Parameter(torch.zeros(1, c, s, s), requires_grad=learn_top)

    @property
    def num_dims(self) -> int:
        """Dimensions ``D`` of one image (``C * H * W``)."""
        return self.in_channels * self.image_size**2

    def _encode(self, x):
        """``x -> (latents, log p(z), log|det|)``; ``latents`` one tensor per level."""
        log_pz = x.new_zeros(x.shape[0])
        log_det = x.new_zeros(x.shape[0])
        latents = []
        h = x
        for i, level in enumerate(self.levels):
            h, _ = self.squeeze(h)
            # the flow's state stays in plain NCHW: its elementwise work runs on channel halves,
            # contiguous blocks there; the coupling networks switch to channels-last themselves
            h = h.contiguous()
            h, log_det = level(h, log_det)
            if i < len(self.splits):
                h, z, lp = self.splits[i].split(h)
                latents.append(z)
                log_pz = log_pz + lp
        latents.append(h)
        log_pz = log_pz + gaussian_log_prob(h, self.top_mean, self.top_log_std)
        return latents, log_pz, log_det

    def log_prob_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log p(z), log|det dz/dx|)``, each ``(N,)``; their sum is :meth:`log_prob`."""
        _, log_pz, log_det = self._encode(x)
        return log_pz, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Natural-log density of continuous ``x``, shape ``(N,)``."""
        log_pz, log_det = self.log_prob_parts(x)
        return log_pz + log_det

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bijection ``x -> z``: all latents flattened to ``(N, D)``, and ``log|det dz/dx|``."""
        latents, _, log_det = self._encode(x)
        return torch.cat([z.flatten(1) for z in latents], 1), log_det

    def _decode(self, latents: list[torch.Tensor | None], temperature: float = 1.0):
        """``latents -> (x, log|det dx/dz|)``; a ``None`` latent is drawn from its split prior."""
        h = latents[-1]
        log_det = h.new_zeros(h.shape[0])
        for i in reversed(range(len(self.levels))):
            if i < len(self.splits):
                h = self.splits[i].merge(h, latents[i], temperature)
            h, log_det = self.levels[i].inverse(h, log_det)
            h, _ = self.squeeze.inverse(h)
        return h, log_det

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of :meth:`forward`: ``(x, log|det dx/dz|)``."""
        latents, start = [], 0
        for shape in self.latent_shapes:
            size = shape[0] * shape[1] * shape[2]
            latents.append(z[:, start : start + size].reshape(-1, *shape))
            start += size
        return self._decode(latents)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` images in ``[-0.5, 0.5]`` (clamped), latents drawn at ``temperature``."""
        top = self.top_mean + temperature * torch.exp(self.top_log_std) * torch.randn(
            n, *self.top_mean.shape[1:], device=self.top_mean.device
        )
        x, _ = self._decode([None] * len(self.splits) + [top], temperature)
        return x.clamp(-0.5, 0.5)

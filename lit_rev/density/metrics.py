"""Density metrics as torchmetrics ``Metric``s (their states are summed across DDP ranks)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torchmetrics import Metric

from lit_rev.options import check_choice

#: What a network's ``log_prob`` returns: a log-density of the continuous image (flows) or a
#: log-probability mass of the integer image (discrete models).
Likelihood = Literal["density", "mass"]


def bits_per_dim(
    log_prob: torch.Tensor, num_dims: int, n_bits: int = 8, likelihood: Likelihood = "density"
) -> torch.Tensor:
    """Bits per dimension of quantised images from a model's ``log_prob`` (natural log).

    ``likelihood="mass"``: ``log_prob`` is ``log P(k)`` of the integer image ``k``, and
    bits/dim is ``-log2 P(k) / D``. ``likelihood="density"``: ``log_prob`` is a density of
    the continuous image ``x = (k + u) / 2**n_bits - 1/2``; each of the ``D`` pixel cells has
    width ``2**-n_bits``, so ``log P(k) ~= log p(x) - D * n_bits * log 2`` and bits/dim is
    ``-log p(x) / (D log 2) + n_bits``.
    """
    check_choice("likelihood", likelihood, Likelihood)
    bpd = -log_prob / (num_dims * math.log(2))
    return bpd + n_bits if likelihood == "density" else bpd


class BitsPerDim(Metric):
    """Mean bits/dim over all images seen (per-image values in, average out; DDP-correct)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state(
            "total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, bpd: torch.Tensor) -> None:
        """Add the per-image bits/dim ``bpd`` (any shape) to the running sum (float64)."""
        bpd = bpd.detach()
        self.total += bpd.double().sum()
        self.count += bpd.numel()

    def compute(self) -> torch.Tensor:
        """The mean bits/dim of every image seen (0 before the first)."""
        return (self.total / self.count.clamp_min(1)).float()

"""The gradient reversal layer of DANN (Ganin et al. 2016), the heart of GRAD.

Forward it is the identity; backward it multiplies the incoming gradient by ``−λ``. Put
between the encoder and an adversarial head, the head learns to predict the protected
attribute while the encoder receives the *negated* gradient of that head's loss: one
backward pass trains the head to find the attribute and the encoder to hide it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, lambda_: float) -> Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.lambda_ * grad, None


def reverse_gradient(x: Tensor, lambda_: float) -> Tensor:
    """Identity on ``x``; its gradient comes back multiplied by ``−lambda_``."""
    return _Reverse.apply(x, float(lambda_))


def dann_ramp(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule factor ``2 / (1 + exp(−γ p)) − 1``: 0 at ``p = 0``, → 1 as ``p → 1``."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class GradientReversal(nn.Module):
    """The gradient reversal layer as a module, with a constant or a ramped ``λ``.

    ``λ`` is constant, or ``λ · dann_ramp(p, γ)`` with ``ramp=True``, where the owner sets the
    training progress ``p ∈ [0, 1]`` through :attr:`progress`.
    """

    def __init__(self, lambda_: float = 1.0, ramp: bool = False, gamma: float = 10.0):
        super().__init__()
        self.lambda_ = lambda_
        self.ramp = ramp
        self.gamma = gamma
        self.progress = 1.0

    @property
    def current_lambda(self) -> float:
        """``λ`` at the current progress."""
        return self.lambda_ * dann_ramp(self.progress, self.gamma) if self.ramp else self.lambda_

    def forward(self, x: Tensor) -> Tensor:
        """Identity; the gradient comes back multiplied by ``−current_lambda``."""
        return reverse_gradient(x, self.current_lambda)

    def extra_repr(self) -> str:
        """The settings, shown in the module's ``repr``."""
        return f"lambda_={self.lambda_}, ramp={self.ramp}, gamma={self.gamma}"

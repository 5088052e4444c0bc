"""Scoring a model outside a training step: eval mode, no autograd, per-batch columns.

Shared by the slices (it imports none of them): :func:`evaluating` is the one way to switch a
module to evaluation and back, :func:`score_batches` the one loop that scores batches and
gathers their per-image columns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(module: nn.Module, grad: bool = False) -> Iterator[nn.Module]:
    """``module`` in eval mode (and under ``torch.no_grad``) within the block, then as it was.

    On exit, also on an exception, every submodule gets back its own ``training`` flag, so a
    part kept in eval mode on purpose (a frozen encoder) stays there.

    Args:
        module: the module to evaluate.
        grad: keep autograd on (for derivatives with respect to the input); eval mode only.
    """
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with contextlib.nullcontext() if grad else torch.no_grad():
            yield module
    finally:
        for m, training in flags:
            m.training = training


def score_batches(
    score: Callable[[Any], dict[str, torch.Tensor]],
    batches: Iterable,
    max_batches: int | None = None,
) -> dict[str, torch.Tensor]:
    """``score`` of every batch, each column concatenated over the batches (on the CPU).

    Args:
        score: maps one batch to per-image columns ``{name: (N, ...)}``.
        batches: the batches (a loader, or slices of a tensor by :func:`slices`).
        max_batches: score at most this many batches.

    Returns:
        ``{name: (total, ...)}``; empty when there was no batch.
    """
    parts: dict[str, list[torch.Tensor]] = {}
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        for key, value in score(batch).items():
            parts.setdefault(key, []).append(value.detach().cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


def slices(tensor: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``tensor`` along its first dimension, ``batch_size`` rows each."""
    for start in range(0, len(tensor), batch_size):
        yield tensor[start : start + batch_size]

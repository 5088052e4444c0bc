"""Reversible blocks, and a sequence of blocks whose backward recomputes its activations.

A :class:`ReversibleBlock` splits its input on channels, ``x = (x1, x2)``, and computes

    y1 = x1 + F(x2)
    y2 = x2 + G(y1)

which inverts exactly: ``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``.

:class:`ReversibleSequence` runs a list of blocks. With ``memory_saving=True`` its forward keeps
no activation except the final output and the inputs of the blocks that are *not* reversible
(a strided unit, say). Going backwards, each reversible block evaluates ``G(y1)`` and ``F(x2)``
once each with autograd on, and uses those same evaluations both to reconstruct its input and
to back-propagate: one extra forward per block. A non-reversible block is re-run from its
stored input, which makes it gradient checkpointing for that block.

Everything the backward needs goes through ``ctx.save_for_backward`` (so
``torch.autograd.graph.saved_tensors_hooks`` sees it). Batch-norm running statistics are
updated only by the forward, random state is replayed for dropout, autocast is re-entered
as it was, and parameter gradients reach autograd as outputs of the Function (no
``backward()`` inside ``backward``), so DDP sees each parameter ready exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

LOW_PRECISION = (torch.float16, torch.bfloat16)


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module):
    """Batch norms inside ``module`` normalise as they would but leave their running statistics.

    In training mode they still use batch statistics; in eval mode the running ones. The
    backward's recomputations run under it, so the statistics move once per step, as in the
    forward.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def rng_state(device: torch.device) -> list[torch.Tensor]:
    """The CPU random state, plus the CUDA one when ``device`` is a GPU."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


@contextlib.contextmanager
def replayed_rng(states: Sequence[torch.Tensor] | None, device: torch.device):
    """Run the body with the random state ``states``; the caller's state is restored afterwards."""
    if states is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(states[0])
        if devices:
            torch.cuda.set_rng_state(states[1], device)
        yield


class ReversibleBlock(nn.Module):
    """``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` on the two channel halves of ``x``.

    Args:
        f: F, any module from half the input's channels to half the output's.
        g: G, likewise.
    """

    def __init__(self, f: nn.Module, g: nn.Module):
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x: torch.Tensor, rng_log: list | None = None) -> torch.Tensor:
        """``(y1, y2)`` concatenated on channels.

        Args:
            x: the input; its channels are split in halves ``x1``, ``x2``.
            rng_log: where given, the random state before F and before G is appended to it,
                so that the backward can replay them (dropout masks).
        """
        x1, x2 = x.chunk(2, dim=1)
        if rng_log is not None:
            rng_log.append(rng_state(x.device))
        y1 = x1 + self.f(x2)
        if rng_log is not None:
            rng_log.append(rng_state(x.device))
        y2 = x2 + self.g(y1)
        return torch.cat((y1, y2), dim=1)

    @torch.no_grad()
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input that produced ``y`` (batch-norm running statistics untouched)."""
        y1, y2 = y.chunk(2, dim=1)
        with frozen_running_stats(self):
            x2 = y2 - self.g(y1)
            x1 = y1 - self.f(x2)
        return torch.cat((x1, x2), dim=1)


def _grad(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_outputs: torch.Tensor) -> list:
    """Vector-Jacobian product; ``None`` for inputs that do not require grad or are unused."""
    wanted = [t for t in inputs if t.requires_grad]
    found = iter(
        torch.autograd.grad(outputs, wanted, grad_outputs.to(outputs.dtype), allow_unused=True)
        if wanted
        else []
    )
    return [next(found) if t.requires_grad else None for t in inputs]


def _reversible_step(block: ReversibleBlock, y: tuple, dy: tuple, rng, need_x1: bool):
    """One block backwards: reconstruct its input and back-propagate, running F and G once each.

    Takes and returns channel halves, so no concatenation happens between reversible blocks.
    With ``dy1_total = dy1 + G'(y1)^T dy2`` (y1 also feeds y2 through G):
    ``dx1 = dy1_total`` and ``dx2 = dy2 + F'(x2)^T dy1_total``.
    """
    (y1, y2), (dy1, dy2) = y, dy
    device = y1.device
    g_params, f_params = list(block.g.parameters()), list(block.f.parameters())
    with torch.enable_grad(), replayed_rng(rng and rng[1], device):
        y1 = y1.detach().requires_grad_()
        g = block.g(y1)
    x2 = (y2 - g.detach()).detach()
    dy1_g, *dg = _grad(g, [y1, *g_params], dy2)
    del g
    dy1_total = dy1 + dy1_g if dy1_g is not None else dy1
    with torch.enable_grad(), replayed_rng(rng and rng[0], device):
        x2.requires_grad_()
        f = block.f(x2)
    x1 = (y1.detach() - f.detach()) if need_x1 else None
    dx2_f, *df = _grad(f, [x2, *f_params], dy1_total)
    dx2 = dy2 + dx2_f if dx2_f is not None else dy2
    return (x1, x2.detach()), (dy1_total, dx2), df + dg


def _halves(t: torch.Tensor | tuple) -> tuple:
    """The two channel halves of ``t`` (already halves: as they are)."""
    return t if isinstance(t, tuple) else tuple(t.chunk(2, dim=1))


def _whole(t: torch.Tensor | tuple) -> torch.Tensor:
    """``t`` as one tensor (channel halves concatenated)."""
    return torch.cat(t, dim=1) if isinstance(t, tuple) else t


def _stored_step(block: nn.Module, x: torch.Tensor, dy: torch.Tensor, rng):
    """A non-reversible block backwards: re-run it from its stored input ``x``."""
    params = list(block.parameters())
    with torch.enable_grad(), replayed_rng(rng and rng[0], x.device):
        x = x.detach().requires_grad_()
        out = block(x)
    dx, *dparams = _grad(out, [x, *params], dy)
    return dx, dparams


class _MemorySavingFunction(torch.autograd.Function):
    """Forward without a graph; backward by reconstruction (reversible blocks) or recomputation."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, seq: ReversibleSequence, *params: torch.Tensor
    ) -> torch.Tensor:
        device_type = x.device.type
        ctx.seq = seq
        ctx.autocast = dict(
            device_type=device_type,
            enabled=torch.is_autocast_enabled(device_type),
            dtype=torch.get_autocast_dtype(device_type),
            cache_enabled=torch.is_autocast_cache_enabled(),
        )
        keep_rng = seq.preserve_rng_state
        to_save: list[torch.Tensor] = []
        # per block: (index of its stored input or None, indices of its rng states, input dtype)
        plan = []
        for block in seq.blocks:
            reversible = isinstance(block, ReversibleBlock)
            stored = None
            if not reversible:
                stored = len(to_save)
                to_save.append(x)
            log = [] if keep_rng else None
            if reversible:
                y = block(x, rng_log=log)
            else:
                if log is not None:
                    log.append(rng_state(x.device))
                y = block(x)
            rng_index = []
            for states in log or []:
                rng_index.append(list(range(len(to_save), len(to_save) + len(states))))
                to_save.extend(states)
            plan.append((stored, rng_index, x.dtype))
            x = y
        ctx.plan = plan
        ctx.save_for_backward(x, *to_save)
        return x

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        y, *saved = ctx.saved_tensors
        blocks, plan = list(ctx.seq.blocks), ctx.plan
        grads: list[list] = [[] for _ in blocks]
        with torch.autocast(**ctx.autocast), frozen_running_stats(ctx.seq):
            for i in reversed(range(len(blocks))):
                stored, rng_index, dtype = plan[i]
                rng = [[saved[j] for j in idx] for idx in rng_index] or None
                if stored is None:
                    # The input is needed only as the output of a previous reversible block.
                    need_x = i > 0 and plan[i - 1][0] is None
                    x, dy, grads[i] = _reversible_step(
                        blocks[i], _halves(y), _halves(dy), rng, need_x1=need_x
                    )
                    y = tuple(t.to(dtype) for t in x) if need_x else None
                else:
                    y = saved[stored]
                    dy, grads[i] = _stored_step(blocks[i], y, _whole(dy), rng)
        return (_whole(dy), None, *(g for block_grads in grads for g in block_grads))


class ReversibleSequence(nn.Module):
    """Blocks run in order; with ``memory_saving`` the backward keeps few activations.

    Only the inputs of the blocks that are not reversible are kept for the backward (and the
    final output); the reversible blocks' inputs are reconstructed from their outputs.

    Args:
        blocks: :class:`ReversibleBlock` instances and any other modules (whose inputs are
            stored).
        memory_saving: use the reconstructing backward when autograd is recording; otherwise
            (and always under ``no_grad``) the blocks run as a plain ``nn.Sequential``.
        preserve_rng_state: replay the random state in the backward so dropout masks match the
            forward's. ``None``: only when the blocks contain a dropout module.

    Under autocast the stream between blocks is kept in float32 (F and G still run in the low
    precision), so the inverse stays accurate to float32 rounding.
    """

    def __init__(
        self,
        blocks: Iterable[nn.Module],
        memory_saving: bool = True,
        preserve_rng_state: bool | None = None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.memory_saving = memory_saving
        if preserve_rng_state is None:
            preserve_rng_state = any(isinstance(m, _DropoutNd) for m in self.modules())
        self.preserve_rng_state = preserve_rng_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks applied in order; memory-saving when autograd records and it is on."""
        if x.dtype in LOW_PRECISION and torch.is_autocast_enabled(x.device.type):
            x = x.float()
        params = [p for block in self.blocks for p in block.parameters()]
        if (
            self.memory_saving
            and torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for p in params))
        ):
            return _MemorySavingFunction.apply(x, self, *params)
        for block in self.blocks:
            x = block(x)
        return x

    def extra_repr(self) -> str:
        """``memory_saving=...`` in the module's printout."""
        return f"memory_saving={self.memory_saving}"

"""Reversible blocks, and a sequence of blocks whose backward recomputes its activations.

A :class:`ReversibleBlock` splits its input in two halves along ``split_dim``,
``x = (x1, x2)`` (channels of an image, features of a ``(batch, tokens, features)`` sequence),
and couples them. The additive coupling (RevNet) computes

    y1 = x1 + F(x2)
    y2 = x2 + G(y1)

which inverts exactly: ``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``. The affine coupling has F
and G return a pair ``(s, t)`` and computes ``y1 = x1 * exp(s_F) + t_F``,
``y2 = x2 * exp(s_G) + t_G``, with the log-scale softly bounded (see
:class:`ReversibleBlock`).

:class:`ReversibleSequence` runs a list of blocks. With ``memory_saving=True`` its forward keeps
no activation except the final output and the inputs of the blocks that are neither reversible
nor an :class:`InvertibleLayer` (a strided unit, say). Going backwards, each reversible block
evaluates ``G(y1)`` and ``F(x2)`` once each with autograd on, and uses those same evaluations
both to reconstruct its input and to back-propagate: one extra forward per block. An
invertible layer rebuilds its input with its ``inverse`` and back-propagates through its
``forward`` there. A block of any other kind is re-run from its stored input, which makes it
gradient checkpointing for that block.

Everything the backward needs goes through ``ctx.save_for_backward`` (so
``torch.autograd.graph.saved_tensors_hooks`` sees it). Batch-norm running statistics are
updated only by the forward; the random state is replayed for every F, G or stored block that
drew random numbers in the forward (``preserve_rng_state``, as ``torch.utils.checkpoint``);
autocast is re-entered as it was; parameter gradients reach autograd as outputs of the
Function (no ``backward()`` inside ``backward``), so DDP sees each parameter ready exactly once.
The recomputation is not counted by ``torch.utils.flop_counter.FlopCounterMode``, so a
memory-saving network counts the same FLOPs as the plain one.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, NamedTuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lit_rev.options import check_choice

LOW_PRECISION = (torch.float16, torch.bfloat16)

#: How a ReversibleBlock combines a half with the output of F or G.
CouplingKind = Literal["additive", "affine"]


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


def _logged_call(fn: Callable, x: torch.Tensor, rng_log: list | None):
    """``fn(x)``, logging the random state before the call where ``rng_log`` is given.

    The state is appended only if the call drew random numbers (the state moved), else
    ``None``: a deterministic F or G costs no stored state.
    """
    if rng_log is None:
        return fn(x)
    before = rng_state(x.device)
    out = fn(x)
    after = rng_state(x.device)
    # The states are small uint8 tensors: comparing their bytes avoids torch.equal's dispatch.
    moved = any(
        a.numpy().tobytes() != b.numpy().tobytes() for a, b in zip(before, after, strict=True)
    )
    rng_log.append(before if moved else None)
    return out


class InvertibleLayer(nn.Module, metaclass=abc.ABCMeta):
    """A parameter-free layer with an exact inverse, e.g. a space-to-depth squeeze.

    Inside a :class:`ReversibleSequence` with ``memory_saving=True`` nothing is stored for it:
    the backward rebuilds its input ``x = inverse(y)`` from its output and takes the
    vector-Jacobian product of ``forward`` at that ``x``. It must therefore have no parameters
    (the sequence checks) and no buffers that change, and ``inverse(forward(x))`` must be ``x``.
    """

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output ``y``."""

    @abc.abstractmethod
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input ``x`` with ``forward(x) == y``."""


class ReversibleBlock(nn.Module):
    """``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` (or the affine coupling) on two halves of ``x``.

    With ``coupling="affine"`` F and G each return a pair ``(s, t)`` of tensors shaped like
    the half they act on, and the block computes

        y1 = x1 * exp(b * tanh(s_F / b)) + t_F,   y2 = x2 * exp(b * tanh(s_G / b)) + t_G,

    with ``b = max_log_scale``: the log-scale is a tanh-bounded ("soft-clamped") ``s``, equal
    to ``s`` near 0 and never beyond ``+-b``, so that the scale stays in
    ``(exp(-b), exp(b))`` and neither overflows nor collapses however F and G are trained.

    Args:
        f: F, any module from one half of the input to one half of the output (affine: to a
            pair ``(s, t)`` of such halves).
        g: G, likewise.
        split_dim: the axis cut in halves: 1 for the channels of ``(N, C, H, W)`` images,
            ``-1`` for the features of ``(batch, tokens, features)`` sequences. Its size must
            be even.
        coupling: ``"additive"`` (RevNet) or ``"affine"``.
        max_log_scale: ``b`` above, the bound on the affine log-scale (unused when additive).
    """

    def __init__(
        self,
        f: nn.Module,
        g: nn.Module,
        split_dim: int = 1,
        coupling: CouplingKind = "additive",
        max_log_scale: float = 2.0,
    ):
        super().__init__()
        check_choice("coupling", coupling, CouplingKind)
        if not isinstance(split_dim, int) or isinstance(split_dim, bool):
            raise TypeError(f"split_dim must be an int axis (1, -1, ...), got {split_dim!r}")
        if not max_log_scale > 0:
            raise ValueError(f"max_log_scale must be > 0, got {max_log_scale!r}")
        self.f = f
        self.g = g
        self.split_dim = split_dim
        self.coupling = coupling
        self.max_log_scale = float(max_log_scale)

    def extra_repr(self) -> str:
        """``split_dim`` and ``coupling`` in the module's printout."""
        return f"split_dim={self.split_dim}, coupling={self.coupling!r}"

    def split_axis(self, x: torch.Tensor) -> int:
        """``split_dim`` as a non-negative axis of ``x`` (which must have an even size there)."""
        if not -x.dim() <= self.split_dim < x.dim():
            raise ValueError(
                f"split_dim={self.split_dim} is not an axis of an input of shape "
                f"{tuple(x.shape)}; use 1 for image channels or -1 for sequence features"
            )
        dim = self.split_dim % x.dim()
        if x.shape[dim] % 2:
            raise ValueError(
                f"split_dim={self.split_dim} cuts the input of shape {tuple(x.shape)} in halves, "
                f"but its size there is odd ({x.shape[dim]}); make that axis even"
            )
        return dim

    def scale_shift(self, h, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bounded log-scale and the shift from an affine F's or G's output ``h = (s, t)``.

        Both come out in ``like``'s dtype (the stream's: float32 under autocast).
        """
        if not (isinstance(h, (tuple, list)) and len(h) == 2):
            raise TypeError(
                'coupling="affine" needs F and G to return a pair (s, t) of tensors shaped like '
                f"the half they act on; got {type(h).__name__}. Return (s, t), or use "
                'coupling="additive"'
            )
        s, t = h
        b = self.max_log_scale
        return b * torch.tanh(s.to(like.dtype) / b), t.to(like.dtype)

    def checked(self, name: str, h, half: torch.Tensor):
        """``h``, the output of F or G (``name``), once its shape is checked against ``half``.

        An additive ``h`` and each tensor of an affine ``(s, t)`` must be shaped like the half
        they are coupled with; otherwise broadcasting or a later layer would fail far from the
        cause, or silently change the block. Comparing shapes costs nothing beside F and G.
        """
        for part in h if isinstance(h, (tuple, list)) else (h,):
            shape = getattr(part, "shape", None)
            if shape is not None and shape != half.shape:
                raise ValueError(
                    f"{name} of {type(self).__name__} returned shape {tuple(shape)}, but the half "
                    f"it is coupled with has shape {tuple(half.shape)} (the input cut in two on "
                    f"split_dim={self.split_dim}): make {name} map a half to a tensor of that "
                    "shape"
                )
        return h

    def couple(self, x: torch.Tensor, h) -> torch.Tensor:
        """One half-step forwards: ``x + h`` (additive) or ``x * exp(s) + t`` (affine)."""
        if self.coupling == "additive":
            return x + h
        log_scale, shift = self.scale_shift(h, x)
        return x * log_scale.exp() + shift

    def uncouple(self, y: torch.Tensor, h) -> torch.Tensor:
        """One half-step backwards: the ``x`` with ``couple(x, h) == y``."""
        if self.coupling == "additive":
            return y - h
        log_scale, shift = self.scale_shift(h, y)
        return (y - shift) * torch.exp(-log_scale)

    def forward(self, x: torch.Tensor, rng_log: list | None = None) -> torch.Tensor:
        """``(y1, y2)`` concatenated on ``split_dim``.

        Args:
            x: the input; it is cut in halves ``x1``, ``x2`` along ``split_dim``.
            rng_log: where given, two entries are appended to it: the random state before F
                and before G, each only if that call drew random numbers (else ``None``), so
                that the backward can replay them.
        """
        dim = self.split_axis(x)
        x1, x2 = x.chunk(2, dim=dim)
        y1 = self.couple(x1, self.checked("F", _logged_call(self.f, x2, rng_log), x1))
        y2 = self.couple(x2, self.checked("G", _logged_call(self.g, y1, rng_log), x2))
        return torch.cat((y1, y2), dim=dim)

    @torch.no_grad()
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input that produced ``y`` (batch-norm running statistics untouched)."""
        dim = self.split_axis(y)
        y1, y2 = y.chunk(2, dim=dim)
        with frozen_running_stats(self):
            x2 = self.uncouple(y2, self.checked("G", self.g(y1), y2))
            x1 = self.uncouple(y1, self.checked("F", self.f(x2), y1))
        return torch.cat((x1, x2), dim=dim)


def _grad(outputs: torch.Tensor, inputs: list[torch.Tensor], grad_outputs: torch.Tensor) -> list:
    """Vector-Jacobian product; ``None`` for inputs that do not require grad or are unused."""
    wanted = [t for t in inputs if t.requires_grad]
    found = iter(
        torch.autograd.grad(outputs, wanted, grad_outputs.to(outputs.dtype), allow_unused=True)
        if wanted
        else []
    )
    return [next(found) if t.requires_grad else None for t in inputs]


def _add(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return a + b if b is not None else a


@contextlib.contextmanager
def _uncounted_flops():
    """The body's FLOPs are left out of any active ``FlopCounterMode``.

    The backward's recomputation of F and G runs under it, so a memory-saving network counts
    the FLOPs of the plain network's forward and backward (the recomputation, one extra
    forward of the reversible and stored blocks, is excluded). Counts are restored to what
    they were on entry, per module and per operator.
    """
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
    except ImportError:  # a torch without it: count everything rather than fail
        yield
        return
    counters = [
        mode.counter
        for mode in _get_current_dispatch_mode_stack()
        if type(mode).__name__ == "_FlopCounterMode" and hasattr(mode, "counter")
    ]
    snapshots = [{k: dict(v) for k, v in c.flop_counts.items()} for c in counters]
    try:
        yield
    finally:
        for counter, snapshot in zip(counters, snapshots, strict=True):
            counts = counter.flop_counts
            for module in list(counts):
                if module not in snapshot:
                    del counts[module]
                    continue
                for op in list(counts[module]):
                    if op in snapshot[module]:
                        counts[module][op] = snapshot[module][op]
                    else:
                        del counts[module][op]


def _alias(leaf: torch.Tensor) -> torch.Tensor:
    """A view of ``leaf`` that is not a leaf, for the backward's recomputation to run on.

    Hooks that put gradient hooks on every module input needing grad (the module tracker of
    ``FlopCounterMode`` and of Lightning's model summary) cannot hook a leaf inside
    ``torch.autograd.grad``; the gradient still reaches ``leaf`` through the view.
    """
    return leaf.view_as(leaf)


def _additive_step(block: ReversibleBlock, y: tuple, dy: tuple, rng: list, need_x1: bool):
    """One additive block backwards: rebuild its input and back-propagate, F and G run once.

    Takes and returns halves, so no concatenation happens between reversible blocks.
    With ``dy1_total = dy1 + G'(y1)^T dy2`` (y1 also feeds y2 through G):
    ``dx1 = dy1_total`` and ``dx2 = dy2 + F'(x2)^T dy1_total``.
    """
    (y1, y2), (dy1, dy2) = y, dy
    device = y1.device
    g_params, f_params = list(block.g.parameters()), list(block.f.parameters())
    with torch.enable_grad(), replayed_rng(rng[1], device), _uncounted_flops():
        y1 = y1.detach().requires_grad_()
        g = block.g(_alias(y1))
    x2 = (y2 - g.detach()).detach()
    dy1_g, *dg = _grad(g, [y1, *g_params], dy2)
    del g
    dy1_total = _add(dy1, dy1_g)
    with torch.enable_grad(), replayed_rng(rng[0], device), _uncounted_flops():
        x2.requires_grad_()
        f = block.f(_alias(x2))
    x1 = (y1.detach() - f.detach()) if need_x1 else None
    dx2_f, *df = _grad(f, [x2, *f_params], dy1_total)
    dx2 = _add(dy2, dx2_f)
    return (x1, x2.detach()), (dy1_total, dx2), df + dg


def _affine_half_step(block, fn, x_known, y_other, rng, device):
    """Rebuild ``x_other`` from ``y_other = couple(x_other, fn(x_known))``, calling ``fn`` once.

    Returns it (a leaf needing grad) with the small graph of ``y_other`` built from it.
    """
    with torch.enable_grad(), replayed_rng(rng, device), _uncounted_flops():
        log_scale, shift = block.scale_shift(fn(_alias(x_known)), y_other)
    with torch.no_grad():
        x_other = (y_other - shift) * torch.exp(-log_scale)
    with torch.enable_grad():
        x_other.requires_grad_()
        y_other = x_other * log_scale.exp() + shift
    return x_other, y_other


def _affine_step(block: ReversibleBlock, y: tuple, dy: tuple, rng: list):
    """One affine block backwards, F and G run once each (see :func:`_additive_step`).

    ``y2 = x2 * exp(s_G(y1)) + t_G(y1)`` is rebuilt as a graph from the reconstructed leaf
    ``x2`` and the one evaluation of G; its vector-Jacobian product gives the gradients for
    ``y1``, ``x2`` and G's parameters at once. Likewise for ``y1`` and F.
    """
    (y1, y2), (dy1, dy2) = y, dy
    device = y1.device
    g_params, f_params = list(block.g.parameters()), list(block.f.parameters())
    y1 = y1.detach().requires_grad_()
    x2, y2_graph = _affine_half_step(block, block.g, y1, y2, rng[1], device)
    dy1_g, dx2_g, *dg = _grad(y2_graph, [y1, x2, *g_params], dy2)
    del y2_graph
    dy1_total = _add(dy1, dy1_g)
    x1, y1_graph = _affine_half_step(block, block.f, x2, y1.detach(), rng[0], device)
    dx1, dx2_f, *df = _grad(y1_graph, [x1, x2, *f_params], dy1_total)
    dx2 = _add(dx2_g, dx2_f)
    return (x1.detach(), x2.detach()), (dx1, dx2), df + dg


class _Halves(NamedTuple):
    """The two halves of a tensor cut along ``dim`` (kept apart between reversible blocks)."""

    first: torch.Tensor
    second: torch.Tensor
    dim: int


def _halves(t: torch.Tensor | _Halves, dim: int) -> _Halves:
    """``t`` cut in halves along ``dim`` (already cut there: as it is)."""
    if isinstance(t, _Halves):
        if t.dim == dim:
            return t
        t = _whole(t)
    first, second = t.chunk(2, dim=dim)
    return _Halves(first, second, dim)


def _whole(t: torch.Tensor | _Halves) -> torch.Tensor:
    """``t`` as one tensor (halves concatenated)."""
    return torch.cat((t.first, t.second), dim=t.dim) if isinstance(t, _Halves) else t


def _stored_step(block: nn.Module, x: torch.Tensor, dy: torch.Tensor, rng: list):
    """A non-reversible block backwards: re-run it from its stored input ``x``."""
    params = list(block.parameters())
    with torch.enable_grad(), replayed_rng(rng[0], x.device), _uncounted_flops():
        x = x.detach().requires_grad_()
        out = block(_alias(x))
    dx, *dparams = _grad(out, [x, *params], dy)
    return dx, dparams


def _invertible_step(layer: InvertibleLayer, y: torch.Tensor, dy: torch.Tensor):
    """An invertible layer backwards: rebuild its input, then the VJP of ``forward`` there."""
    with torch.no_grad(), _uncounted_flops():
        x = layer.inverse(y)
    with torch.enable_grad(), _uncounted_flops():
        x = x.detach().requires_grad_()
        out = layer(_alias(x))
    (dx,) = _grad(out, [x], dy)
    return x.detach(), dx


# What the memory-saving forward did with each block (see _MemorySavingFunction).
_REVERSIBLE, _INVERTIBLE, _STORED = "reversible", "invertible", "stored"


class _MemorySavingFunction(torch.autograd.Function):
    """Forward without a graph; backward by reconstruction or recomputation.

    Reversible blocks and invertible layers are reconstructed from their outputs; other
    blocks are recomputed from their stored inputs.
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, seq: ReversibleSequence, *params: torch.Tensor
    ) -> torch.Tensor:
        # Detached, so that nothing inside looks like part of a graph: hooks that register
        # gradient hooks on every module input needing grad (FlopCounterMode's module tracker)
        # would otherwise find views with requires_grad but no grad_fn.
        x = x.detach()
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
        # per block: (kind, index of its stored input or None, per call the indices of its
        # saved rng state or None, input dtype)
        plan = []
        for block in seq.blocks:
            stored = None
            log = [] if keep_rng else None
            if isinstance(block, ReversibleBlock):
                kind = _REVERSIBLE
                y = block(x, rng_log=log)
            elif isinstance(block, InvertibleLayer):
                kind = _INVERTIBLE
                y = block(x)
            else:
                kind = _STORED
                stored = len(to_save)
                to_save.append(x)
                y = _logged_call(block, x, log)
            rng_index = []
            for states in log or []:
                if states is None:
                    rng_index.append(None)
                    continue
                rng_index.append(list(range(len(to_save), len(to_save) + len(states))))
                to_save.extend(states)
            plan.append((kind, stored, rng_index, x.dtype))
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
                kind, stored, rng_index, dtype = plan[i]
                rng = [None if idx is None else [saved[j] for j in idx] for idx in rng_index]
                rng += [None] * (2 - len(rng))
                # The input is needed only as the output of a block that is not stored.
                need_x = i > 0 and plan[i - 1][0] != _STORED
                block = blocks[i]
                if kind == _REVERSIBLE:
                    # y's shape may be halved already, so only the axis is computed here.
                    dim = block.split_dim % (y.first if isinstance(y, _Halves) else y).dim()
                    halves_y, halves_dy = _halves(y, dim), _halves(dy, dim)
                    if block.coupling == "additive":
                        x, dx, grads[i] = _additive_step(
                            block, halves_y[:2], halves_dy[:2], rng, need_x1=need_x
                        )
                    else:
                        x, dx, grads[i] = _affine_step(block, halves_y[:2], halves_dy[:2], rng)
                    y = _Halves(*(t.to(dtype) for t in x), dim) if need_x else None
                    dy = _Halves(*dx, dim)
                elif kind == _INVERTIBLE:
                    x, dy = _invertible_step(block, _whole(y), _whole(dy))
                    y = x.to(dtype) if need_x else None
                else:
                    y = saved[stored]
                    dy, grads[i] = _stored_step(block, y, _whole(dy), rng)
        return (_whole(dy), None, *(g for block_grads in grads for g in block_grads))


class ReversibleSequence(nn.Module):
    """Blocks run in order; with ``memory_saving`` the backward keeps few activations.

    Only the inputs of the blocks that are neither reversible nor invertible layers are kept
    for the backward (and the final output); the other blocks' inputs are reconstructed from
    their outputs.

    Args:
        blocks: :class:`ReversibleBlock` and :class:`InvertibleLayer` instances, and any other
            modules (whose inputs are stored).
        memory_saving: use the reconstructing backward when autograd is recording; otherwise
            (and always under ``no_grad``) the blocks run as a plain ``nn.Sequential``.
        preserve_rng_state: replay the random state in the backward, so that dropout masks and
            any other random numbers drawn inside F, G or a stored block (``torch.randn``...)
            match the forward's, as ``torch.utils.checkpoint`` does. Only calls that drew
            random numbers keep a state (5 KiB on CPU). ``False`` saves the check for speed;
            then a block that draws random numbers gets wrong gradients.

    Under autocast the stream between blocks is kept in float32 (F and G still run in the low
    precision), so the inverse stays accurate to float32 rounding.
    """

    def __init__(
        self,
        blocks: Iterable[nn.Module],
        memory_saving: bool = True,
        preserve_rng_state: bool = True,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        for i, block in enumerate(self.blocks):
            if isinstance(block, InvertibleLayer):
                names = [name for name, _ in block.named_parameters()]
                if names:
                    raise ValueError(
                        f"blocks[{i}] ({type(block).__name__}) is an InvertibleLayer with "
                        f"parameters {names}; the memory-saving backward gives them no "
                        "gradient. Make it parameter-free or wrap it in a ReversibleBlock"
                    )
        self.memory_saving = memory_saving
        if not isinstance(preserve_rng_state, bool):
            raise TypeError(f"preserve_rng_state must be True or False, got {preserve_rng_state!r}")
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

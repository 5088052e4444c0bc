"""Invertible layers of Glow.

Each maps ``x -> (y, log|det dy/dx|)`` per sample and has ``inverse``.

Inputs are ``(N, C, H, W)``; every log-det is a ``(N,)`` tensor (natural log). Layers are
chained by :class:`FlowSequence` alone, so composition and log-det accumulation are written once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from lit_rev.options import check_choice

#: The coupling layer of a flow step: ``additive`` (:class:`AdditiveCoupling`, volume
#: preserving: CV-Glow) or ``affine`` (:class:`AffineCoupling`, Glow).
FlowCoupling = Literal["additive", "affine"]


class FlowLayer(nn.Module):
    """An invertible layer that also returns the log-determinant of its Jacobian.

    The interface every Glow layer follows, so a flow can chain them and sum their log-dets.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x -> (y, log|det dy/dx|)``, the log-det ``(N,)``."""
        raise NotImplementedError

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y -> (x, log|det dx/dy|)``: the inverse of :meth:`forward` and minus its log-det."""
        raise NotImplementedError


class ActNorm(FlowLayer):
    """Per-channel affine ``y = (x + bias) * exp(log_scale)`` with data-dependent init.

    On the first forward in training mode the bias and scale are set so that the batch has
    zero mean and unit variance per channel. Under ``torch.distributed`` the batch moments
    are averaged over all ranks first, so every rank ends with the same parameters. The
    ``initialized`` buffer travels in checkpoints, so a loaded model is never re-initialised.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias and scale so that the batch ``x`` has zero mean, unit variance per channel."""
        moments = torch.stack([x.mean(dim=(0, 2, 3)), (x * x).mean(dim=(0, 2, 3))]).double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, var = moments[0], (moments[1] - moments[0] ** 2).clamp_min(0)
        self.bias.copy_((-mean).view_as(self.bias))
        self.log_scale.copy_((-0.5 * torch.log(var + self.eps)).view_as(self.log_scale))
        self.initialized.fill_(True)

    def forward(self, x):
        """Normalise ``x`` (initialising on the first training batch).

        Every position gets the same scale, so the log-det is ``H * W * sum(log_scale)``.
        """
        if self.training and not self.initialized:
            self.initialize(x)
        log_det = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), log_det.expand(x.shape[0])

    def inverse(self, y):
        """Undo the affine map."""
        log_det = -self.log_scale.sum() * y.shape[2] * y.shape[3]
        return y * torch.exp(-self.log_scale) - self.bias, log_det.expand(y.shape[0])


class InvConv1x1(FlowLayer):
    """Invertible 1x1 convolution ``y = W x`` (Kingma & Dhariwal 2018, Sec. 3.2).

    With ``lu=True``, ``W = P L (U + diag(sign * exp(log_s)))`` with fixed permutation ``P``:
    the log-det is ``H * W * sum(log_s)``, no determinant or inverse is computed in training.
    The inverse is computed in float64 to avoid the drift of a float32 ``inverse``.
    """

    def __init__(self, channels: int, lu: bool = True, seed: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        w, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
        self.lu = lu
        if lu:
            perm, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("perm", perm.float())
            self.register_buffer("sign_s", torch.sign(s).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.register_buffer("eye", torch.eye(channels))
            self.lower = nn.Parameter(lower.float())
            self.upper = nn.Parameter(torch.triu(upper, 1).float())
            self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())
        else:
            self.weight = nn.Parameter(w.float())

    def weight_matrix(self) -> torch.Tensor:
        """The ``(C, C)`` matrix ``W`` (assembled from its LU factors with ``lu=True``)."""
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def log_abs_det(self) -> torch.Tensor:
        """``log|det W|``: ``sum(log_s)`` with ``lu=True``, else ``slogdet`` in float64."""
        return (
            self.log_s.sum()
            if self.lu
            else torch.linalg.slogdet(self.weight.double())[1].to(self.weight.dtype)
        )

    def forward(self, x):
        """``W x`` at every position; log-det ``H W log|det W|``."""
        log_det = self.log_abs_det() * x.shape[2] * x.shape[3]
        return mix_channels(self.weight_matrix(), x), log_det.expand(x.shape[0])

    def inverse(self, y):
        """``W^-1 y`` at every position, ``W^-1`` computed in float64."""
        w_inv = torch.linalg.inv(self.weight_matrix().double()).to(y.dtype)
        log_det = -self.log_abs_det() * y.shape[2] * y.shape[3]
        return mix_channels(w_inv, y), log_det.expand(y.shape[0])


def mix_channels(w: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None):
    """``w @ x + bias`` over the channels of ``(N, C, H, W)`` ``x`` at every position.

    A 1x1 convolution, done as a batched matmul over ``(C, H*W)``: with the few channels of a
    flow (4 to 48 here) oneDNN's convolution is slower than the matmul on CPU.
    """
    n, c, h, w_ = x.shape
    flat = x.reshape(n, c, h * w_)
    if bias is None:
        return torch.matmul(w, flat).view(n, -1, h, w_)
    return torch.baddbmm(bias.view(1, -1, 1).expand(n, -1, h * w_), w.expand(n, -1, -1), flat).view(
        n, -1, h, w_
    )


def convolve_channels_last(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` with ``net``'s convolutions in channels-last, the result back in NCHW.

    oneDNN's CPU convolutions are faster in channels-last, while the flow's elementwise work on
    channel halves wants NCHW (a half is one contiguous block per image there, and runs of 2-4
    floats in channels-last).
    """
    return _ChangeLayout.apply(net(_ChangeLayout.apply(x, True)), False)


class _ChangeLayout(torch.autograd.Function):
    """``x`` in channels-last (``to_channels_last``) or NCHW; its gradient in the other.

    Each side of :func:`convolve_channels_last` then also gets its gradient in its own layout,
    which spares oneDNN's backward a reorder of a gradient that arrives in NCHW.
    """

    @staticmethod
    def forward(ctx, x, to_channels_last: bool):
        ctx.to_channels_last = to_channels_last
        if to_channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad):
        if ctx.to_channels_last:
            return grad.contiguous(), None
        return grad.contiguous(memory_format=torch.channels_last), None


class ZeroConv2d(nn.Module):
    """3x3 convolution initialised at zero, with a per-channel output gain ``exp(3 * log_scale)``.

    As openai/glow: a layer it ends starts as the identity (coupling) or a standard normal
    (prior), which keeps the first training steps stable.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias times the gain: one convolution gives the output."""
        gain = torch.exp(3 * self.log_scale).view(-1)
        return self.conv.weight * gain.view(-1, 1, 1, 1), self.conv.bias * gain

    def forward(self, x):
        """The convolution times the per-channel gain (folded into its weights: one pass less)."""
        return F.conv2d(x, *self.folded(), padding=1)


class CouplingNetwork(nn.Sequential):
    """conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3, run as one autograd node.

    The last layer starts at zero, so each coupling starts as the identity. The layers are the
    children ``0`` to ``4`` (checkpoint keys ``net.0.weight``, ...); ``forward`` runs them as
    :class:`_CouplingNetworkFunction`, the same math with a hand-written backward that masks each
    ReLU's gradient in place, and ``nn.Sequential.forward(net, x)`` chains the layers plainly.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(inplace=True),
            ZeroConv2d(hidden, out_channels),
        )

    def forward(self, x):
        """The network on NCHW ``x``; the output in NCHW."""
        first, _, middle, _, last = self
        weights = (first.weight, first.bias, middle.weight, middle.bias, *last.folded())
        return _CouplingNetworkFunction.run(x, *weights)


class _FusedFunction(torch.autograd.Function):
    """An autograd node with a hand-written backward, for speed, and a plain-ops ``reference``.

    The fast backward is differentiable once. When it is differentiated again (``create_graph``,
    as the Hessian analysis does), ``reference`` is rebuilt from the saved inputs and autograd
    differentiates that, so derivatives of every order stay exact.
    """

    @staticmethod
    def reference(*inputs):
        """The same outputs as ``forward``, in differentiable torch ops."""
        raise NotImplementedError

    @classmethod
    def run(cls, *inputs):
        """The node; its ``reference`` ops under autocast or ``torch.compile``.

        Autocast picks each op's dtype, which a hand-written backward would have to mirror, and
        inductor fuses the plain ops itself (faster than this node once compiled).
        """
        if torch.is_autocast_enabled(inputs[0].device.type) or torch.compiler.is_compiling():
            return cls.reference(*inputs)
        return cls.apply(*inputs)

    @staticmethod
    def save(ctx, inputs, fast):
        """Keep the inputs (for ``reference``) and the fast backward's tensors."""
        ctx.num_inputs = len(inputs)
        ctx.save_for_backward(*inputs, *fast)

    @classmethod
    def differentiate_reference(cls, ctx, grads):
        """The inputs' gradients through ``reference``, themselves differentiable."""
        inputs = ctx.saved_tensors[: ctx.num_inputs]
        outputs = cls.reference(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        wanted = [x for x, need in zip(inputs, ctx.needs_input_grad, strict=True) if need]
        got = iter(
            torch.autograd.grad(outputs, wanted, grads, create_graph=True, allow_unused=True)
        )
        return tuple(next(got) if need else None for need in ctx.needs_input_grad)


_conv_backward = torch.ops.aten.convolution_backward


def _relu_backward_(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Zero ``grad`` where the ReLU's ``output`` is 0, in place (``grad`` is new and unshared)."""
    return torch.ops.aten.threshold_backward.grad_input(grad, output, 0, grad_input=grad)


class _CouplingNetworkFunction(_FusedFunction):
    """:class:`CouplingNetwork`'s layers on NCHW ``x``, the convolutions in channels-last.

    The layouts are those of :func:`convolve_channels_last`, for the same reasons. Each ReLU
    runs in place on its convolution's output, and its backward masks the gradient the next
    convolution's backward has just made, in place: two fewer fresh allocations of the wide
    hidden maps per step.
    """

    @staticmethod
    def reference(x, w1, b1, w2, b2, w3, b3):
        hidden = F.relu(F.conv2d(x, w1, b1, padding=1))
        return F.conv2d(F.relu(F.conv2d(hidden, w2, b2)), w3, b3, padding=1)

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, w3, b3):
        x_cl = x.contiguous(memory_format=torch.channels_last)
        hidden1 = F.conv2d(x_cl, w1, b1, padding=1).relu_()
        hidden2 = F.conv2d(hidden1, w2, b2).relu_()
        out = F.conv2d(hidden2, w3, b3, padding=1)
        _CouplingNetworkFunction.save(ctx, (x, w1, b1, w2, b2, w3, b3), (hidden1, hidden2))
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():
            return _CouplingNetworkFunction.differentiate_reference(ctx, (grad,))
        x, w1, _, w2, _, w3, _, hidden1, hidden2 = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad = grad.contiguous(memory_format=torch.channels_last)
        one, pad = [1, 1], [1, 1]
        g2, gw3, gb3 = _conv_backward(
            grad, hidden2, w3, [w3.shape[0]], one, pad, one, False, [0, 0], 1, [True, *need[5:7]]
        )
        _relu_backward_(g2, hidden2)
        g1, gw2, gb2 = _conv_backward(
            g2, hidden1, w2, [w2.shape[0]], one, [0, 0], one, False, [0, 0], 1, [True, *need[3:5]]
        )
        _relu_backward_(g1, hidden1)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        gx, gw1, gb1 = _conv_backward(
            g1, x_cl, w1, [w1.shape[0]], one, pad, one, False, [0, 0], 1, list(need[0:3])
        )
        return (None if gx is None else gx.contiguous()), gw1, gb1, gw2, gb2, gw3, gb3


class _AffineUpdateFunction(_FusedFunction):
    """``(x_b + shift) * sigmoid(raw + 2)`` and ``sum log sigmoid(raw + 2)`` per sample.

    ``shift`` and ``raw`` are the even and odd channels of the coupling network's output ``h``.
    The backward needs only the scale and the output, and writes ``h``'s gradient interleaved in
    one buffer, where autograd would make each strided slice's gradient a zero-filled full copy.
    """

    @staticmethod
    def reference(xb, h):
        log_scale = F.logsigmoid(h[:, 1::2] + 2.0)
        return (xb + h[:, 0::2]) * torch.exp(log_scale), log_scale.flatten(1).sum(1)

    @staticmethod
    def forward(ctx, xb, h):
        log_scale = F.logsigmoid(h[:, 1::2] + 2.0)
        scale = log_scale.exp()
        yb = torch.add(xb, h[:, 0::2]).mul_(scale)
        _AffineUpdateFunction.save(ctx, (xb, h), (scale, yb))
        return yb, log_scale.flatten(1).sum(1)

    @staticmethod
    def backward(ctx, grad_yb, grad_log_det):
        if torch.is_grad_enabled():
            return _AffineUpdateFunction.differentiate_reference(ctx, (grad_yb, grad_log_det))
        scale, yb = ctx.saved_tensors[2:]
        n, c, height, width = yb.shape
        grad_h = yb.new_empty(n, c, 2, height, width)  # (shift, raw) of each channel side by side
        grad_shift, grad_raw = grad_h[:, :, 0], grad_h[:, :, 1]
        torch.mul(grad_yb, scale, out=grad_shift)  # also x_b's gradient
        # d yb / d raw = yb (1 - scale) and d log_scale / d raw = 1 - scale
        torch.addcmul(grad_log_det.view(n, 1, 1, 1), grad_yb, yb, out=grad_raw)
        grad_raw.addcmul_(grad_raw, scale, value=-1)
        return grad_shift, grad_h.view(n, 2 * c, height, width)


class AffineCoupling(FlowLayer):
    """Affine coupling: ``y_b = (x_b + t(x_a)) * sigmoid(s(x_a) + 2)``, ``y_a = x_a``.

    The sigmoid scale (openai/glow's) keeps every scale in ``(0, 1)``, so no step can blow up
    the activations.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.half = channels // 2
        self.net = CouplingNetwork(self.half, hidden, 2 * (channels - self.half))

    def forward(self, x):
        """Transform the second half of the channels given the first; log-det ``sum(log_scale)``."""
        xa, xb = x.split([self.half, x.shape[1] - self.half], 1)
        yb, log_det = _AffineUpdateFunction.run(xb, self.net(xa))
        return torch.cat([xa, yb], 1), log_det

    def inverse(self, y):
        """Undo :meth:`forward` (the first half is unchanged, so ``t`` and ``s`` are known)."""
        ya, yb = y.split([self.half, y.shape[1] - self.half], 1)
        h = self.net(ya)
        shift, log_scale = h[:, 0::2], F.logsigmoid(h[:, 1::2] + 2.0)
        xb = yb * torch.exp(-log_scale) - shift
        return torch.cat([ya, xb], 1), -log_scale.flatten(1).sum(1)


class AdditiveCoupling(FlowLayer):
    """Additive coupling ``y_b = x_b + t(x_a)``: volume preserving, log-det 0.

    The coupling of the paper's constant-volume Glow (CV-Glow).
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.half = channels // 2
        self.net = CouplingNetwork(self.half, hidden, channels - self.half)

    def forward(self, x):
        """Shift the second half of the channels by ``t`` of the first; log-det 0."""
        xa, xb = x.split([self.half, x.shape[1] - self.half], 1)
        return torch.cat([xa, xb + self.net(xa)], 1), x.new_zeros(x.shape[0])

    def inverse(self, y):
        """Subtract the shift again."""
        ya, yb = y.split([self.half, y.shape[1] - self.half], 1)
        shift = self.net(ya)
        return torch.cat([ya, yb - shift], 1), y.new_zeros(y.shape[0])


class Squeeze(FlowLayer):
    """Space-to-depth: ``(C, H, W) -> (4C, H/2, W/2)``; log-det 0."""

    def forward(self, x):
        """Fold each 2x2 block of pixels into 4 channels."""
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze needs even height and width, got {h}x{w}")
        x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(n, 4 * c, h // 2, w // 2), x.new_zeros(n)

    def inverse(self, y):
        """Unfold every 4 channels into a 2x2 block of pixels."""
        n, c, h, w = y.shape
        y = y.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c // 4, 2 * h, 2 * w), y.new_zeros(n)


class FlowSequence(FlowLayer, nn.ModuleList):
    """Flow layers applied in order: one invertible layer whose log-det is the sum of theirs.

    The only place where layers are chained: :class:`FlowStep` is a sequence of ActNorm,
    1x1 convolution and coupling, and each level of :class:`~lit_rev.density.Glow` is a
    sequence of flow steps. An ``nn.ModuleList``, so its layers are indexed and iterated like
    one and are saved under the keys ``"0"``, ``"1"``, ...

    Args:
        layers: the :class:`FlowLayer` s, in the order :meth:`forward` applies them.
    """

    def __init__(self, layers: Iterable[FlowLayer] = ()):
        super().__init__(layers)

    def forward(self, x, log_det: torch.Tensor | None = None):
        """Each layer's forward in order; ``(y, log_det + sum of their log-dets)``.

        Args:
            x: the input of the first layer.
            log_det: ``(N,)`` running sum the layers' log-dets are added to, one at a time
                (zeros when ``None``). A caller that chains several sequences passes its running
                sum, so the float sum is accumulated in the same order as one flat chain.
        """
        return self._cascade(x, log_det, self)

    def inverse(self, y, log_det: torch.Tensor | None = None):
        """Each layer's inverse in reverse order; ``(x, log_det + sum of their log-dets)``."""
        return self._cascade(y, log_det, [layer.inverse for layer in reversed(self)])

    @staticmethod
    def _cascade(h, log_det, maps):
        """Apply each of ``maps`` (``h -> (h, log-det)``) in turn, adding its log-det to the sum."""
        total = h.new_zeros(h.shape[0]) if log_det is None else log_det
        for bijection in maps:
            h, map_log_det = bijection(h)
            total = total + map_log_det
        return h, total


class FlowStep(FlowLayer):
    """One Glow step: ActNorm, invertible 1x1 convolution and coupling, as a :class:`FlowSequence`.

    Args:
        channels: channels of the input (and output).
        hidden: width of the coupling network.
        coupling: ``"affine"`` (:class:`AffineCoupling`) or ``"additive"``
            (:class:`AdditiveCoupling`).
        lu: LU-parametrised 1x1 convolution (see :class:`InvConv1x1`).
    """

    def __init__(
        self, channels: int, hidden: int, coupling: FlowCoupling = "affine", lu: bool = True
    ):
        super().__init__()
        check_choice("coupling", coupling, FlowCoupling)
        coupling_cls = AffineCoupling if coupling == "affine" else AdditiveCoupling
        # an attribute rather than a base class: checkpoints name these layers ``layers.<i>``
        self.layers = FlowSequence(
            [ActNorm(channels), InvConv1x1(channels, lu=lu), coupling_cls(channels, hidden)]
        )

    def forward(self, x):
        """The three layers in order, their log-dets summed.

        ActNorm and the 1x1 convolution run as one affine map, ``W diag(s) (x + b)`` with
        weight ``W diag(s)`` and bias ``W diag(s) b``: one pass over ``x`` instead of three.
        Its log-det is the sum of theirs; ``self.layers(x)`` gives the same result unfused.
        """
        actnorm, conv, coupling = self.layers
        if actnorm.training and not actnorm.initialized:
            actnorm.initialize(x)
        channels = x.shape[1]
        weight = conv.weight_matrix() * torch.exp(actnorm.log_scale.view(1, channels))
        bias = weight @ actnorm.bias.view(channels)
        pixels = x.shape[2] * x.shape[3]
        log_det = (actnorm.log_scale.sum() * pixels).expand(x.shape[0])
        log_det = log_det + (conv.log_abs_det() * pixels).expand(x.shape[0])
        y, coupling_log_det = coupling(mix_channels(weight, x, bias))
        return y, log_det + coupling_log_det

    def inverse(self, y):
        """The three inverses in reverse order, their log-dets summed."""
        return self.layers.inverse(y)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dim of ``log N(z; mean, exp(log_std)^2)``."""
    lp = -0.5 * (math.log(2 * math.pi) + 2 * log_std + (z - mean) ** 2 * torch.exp(-2 * log_std))
    return lp.flatten(1).sum(1)


class SplitPrior(nn.Module):
    """Glow's split: half the channels leave the flow as latents.

    Their Gaussian prior's mean and log-std are a zero-initialised convolution of the other
    half, which goes on through the flow.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.keep = channels // 2
        self.prior = ZeroConv2d(self.keep, 2 * (channels - self.keep))

    def _params(self, h):
        out = convolve_channels_last(self.prior, h)
        return out[:, 0::2], out[:, 1::2]

    def split(self, x):
        """``x -> (h, z, log p(z | h))``."""
        h, z = x.split([self.keep, x.shape[1] - self.keep], 1)
        mean, log_std = self._params(h)
        return h, z, gaussian_log_prob(z, mean, log_std)

    def merge(self, h, z=None, temperature: float = 1.0):
        """Inverse of :meth:`split`; draws ``z`` from the prior when not given."""
        mean, log_std = self._params(h)
        if z is None:
            z = mean + temperature * torch.exp(log_std) * torch.randn_like(mean)
        return torch.cat([h, z], 1)

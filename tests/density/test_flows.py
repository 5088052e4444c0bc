"""Flow layers and Glow.

One generic test is the single check of every flow layer's bijection: inverse(forward(x)) == x,
the log-det against log|det| of the brute-force Jacobian, and the inverse's log-det is minus the
forward's. Then the composite's running sum, the checkpoint keys, layer-specific behaviour, and
a multi-level Glow's log p(x) against the change of variables, each latent under its own prior.
"""

from collections.abc import Callable
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

from lit_rev.density import Glow
from lit_rev.density.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowLayer,
    FlowSequence,
    FlowStep,
    InvConv1x1,
    Squeeze,
)


def _randomise(module: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    """Move every parameter off its (often identity) initial value by ``scale`` x N(0, 1)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, ActNorm):
                m.initialized.fill_(True)
    return module.double().eval()


class FlowCase(NamedTuple):
    """A flow to check: how to build it, one input's shape, and the tolerances of the checks."""

    build: Callable[[], torch.nn.Module]
    shape: tuple[int, int, int]
    round_trip_atol: float = 1e-10  # inverse(forward(x)) against x, and the two log-dets
    log_det_atol: float = 1e-8  # the log-det against the brute-force Jacobian's
    images: bool = False  # draw inputs as pixels in [-0.5, 0.5) rather than N(0, 1)


def _glow(coupling):
    return Glow(
        in_channels=1, image_size=8, levels=2, steps=2, hidden_channels=8, coupling=coupling
    )


#: Every flow layer class, and Glow (whose bijection has the same interface with flat latents).
FLOWS = {
    "actnorm": FlowCase(lambda: ActNorm(4), (4, 4, 4)),
    "invconv_lu": FlowCase(lambda: InvConv1x1(4, lu=True, seed=1), (4, 4, 4)),
    "invconv_plain": FlowCase(lambda: InvConv1x1(4, lu=False, seed=1), (4, 4, 4)),
    "affine_coupling": FlowCase(lambda: AffineCoupling(4, hidden=8), (4, 4, 4)),
    "additive_coupling": FlowCase(lambda: AdditiveCoupling(4, hidden=8), (4, 4, 4)),
    "squeeze": FlowCase(lambda: Squeeze(), (4, 4, 4)),
    "flow_step_affine": FlowCase(lambda: FlowStep(4, 8, "affine"), (4, 4, 4)),
    "flow_step_additive": FlowCase(lambda: FlowStep(4, 8, "additive", lu=False), (4, 4, 4)),
    # layers that do not commute, a change of shape and a nested sequence (a flow step)
    "flow_sequence": FlowCase(
        lambda: FlowSequence(
            [
                ActNorm(4),
                AffineCoupling(4, hidden=8),
                Squeeze(),
                InvConv1x1(16, lu=False, seed=2),
                FlowStep(16, 8, "additive"),
            ]
        ),
        (4, 4, 4),
    ),
    "glow_affine": FlowCase(lambda: _glow("affine"), (1, 8, 8), 1e-9, 1e-7, images=True),
    "glow_additive": FlowCase(lambda: _glow("additive"), (1, 8, 8), 1e-9, 1e-7, images=True),
}


def _flat_forward(flow, shape):
    def f(v):
        y, _ = flow(v.view(1, *shape))
        return y.flatten()

    return f


@pytest.mark.parametrize("name", FLOWS)
def test_flow_round_trip_and_log_det(name):
    case = FLOWS[name]
    flow = _randomise(case.build())
    x = torch.randn(3, *case.shape, dtype=torch.float64)
    if case.images:
        x = torch.rand(3, *case.shape, dtype=torch.float64) - 0.5
    y, log_det = flow(x)
    assert log_det.shape == (3,)
    x_back, inv_log_det = flow.inverse(y)
    assert torch.allclose(x_back, x, atol=case.round_trip_atol)
    assert torch.allclose(inv_log_det, -log_det, atol=case.round_trip_atol)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(_flat_forward(flow, case.shape), x[i].flatten())
        brute_force = torch.linalg.slogdet(jac)[1].item()
        assert log_det[i].item() == pytest.approx(brute_force, abs=case.log_det_atol)


def _subclasses(cls):
    return {cls} | {s for sub in cls.__subclasses__() for s in _subclasses(sub)}


def test_every_flow_layer_class_is_in_the_generic_test():
    """A new :class:`FlowLayer` is checked by the generic test only once it is in ``FLOWS``."""
    layer_classes = {
        c
        for c in _subclasses(FlowLayer)
        if c is not FlowLayer and c.__module__.startswith("lit_rev")
    }
    covered = {type(case.build()) for case in FLOWS.values()}
    assert layer_classes - covered == set()


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_flow_sequence_adds_each_log_det_to_the_running_sum_in_order(direction):
    """The composite applies its layers in order (reversed for the inverse) and adds each
    log-det to the running sum it is given, one at a time: the float sum of a chain of sequences
    is that of one flat chain. Checked bitwise in float32 against the layers run by hand."""
    torch.manual_seed(0)
    layers = [FlowStep(4, 8), ActNorm(4), FlowStep(4, 8, lu=False), InvConv1x1(4, seed=3)]
    sequence = FlowSequence(layers)
    _randomise(sequence).float()
    x = torch.randn(5, 4, 4, 4)
    start = 1000 * torch.randn(5)
    if direction == "forward":
        maps = list(layers)
        h, log_det = sequence(x, start)
        _, from_zero = sequence(x)
    else:
        maps = [layer.inverse for layer in reversed(layers)]
        h, log_det = sequence.inverse(x, start)
        _, from_zero = sequence.inverse(x)
    expected_h, expected, expected_from_zero = x, start, torch.zeros(5)
    for bijection in maps:
        expected_h, step_log_det = bijection(expected_h)
        expected = expected + step_log_det
        expected_from_zero = expected_from_zero + step_log_det
    assert torch.equal(h, expected_h)
    assert torch.equal(log_det, expected)
    assert torch.equal(from_zero, expected_from_zero)


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_glow_log_det_is_one_running_sum_over_its_steps(direction, monkeypatch):
    """Glow adds every flow step's log-det, level after level, to one running sum (as it did
    before its levels became :class:`FlowSequence` s): the float32 bits of its log-det are those
    of the step log-dets summed one at a time in the order the steps ran."""
    step_log_dets = []

    def recording(method):
        def run(self, h):
            h, log_det = method(self, h)
            step_log_dets.append(log_det)
            return h, log_det

        return run

    monkeypatch.setattr(FlowStep, direction, recording(getattr(FlowStep, direction)))
    torch.manual_seed(0)
    glow = Glow(in_channels=2, image_size=8, levels=3, steps=3, hidden_channels=8)
    glow = _randomise(glow, scale=0.1).float()
    x = torch.rand(8, 2, 8, 8) - 0.5
    with torch.no_grad():
        z, log_det = glow(x)
        if direction == "inverse":
            step_log_dets.clear()
            _, log_det = glow.inverse(z)
    assert len(step_log_dets) == 9 and torch.isfinite(log_det).all()
    expected = torch.zeros(8)
    for step_log_det in step_log_dets:
        expected = expected + step_log_det
    assert torch.equal(log_det, expected)


#: A two-level Glow's checkpoint keys: a renamed or regrouped submodule breaks old checkpoints.
GLOW_KEYS = [
    "top_mean",
    "top_log_std",
    "levels.0.0.layers.0.bias",
    "levels.0.0.layers.0.log_scale",
    "levels.0.0.layers.0.initialized",
    "levels.0.0.layers.1.lower",
    "levels.0.0.layers.1.upper",
    "levels.0.0.layers.1.log_s",
    "levels.0.0.layers.1.perm",
    "levels.0.0.layers.1.sign_s",
    "levels.0.0.layers.1.lower_mask",
    "levels.0.0.layers.1.eye",
    "levels.0.0.layers.2.net.0.weight",
    "levels.0.0.layers.2.net.0.bias",
    "levels.0.0.layers.2.net.2.weight",
    "levels.0.0.layers.2.net.2.bias",
    "levels.0.0.layers.2.net.4.log_scale",
    "levels.0.0.layers.2.net.4.conv.weight",
    "levels.0.0.layers.2.net.4.conv.bias",
    "levels.1.0.layers.0.bias",
    "levels.1.0.layers.0.log_scale",
    "levels.1.0.layers.0.initialized",
    "levels.1.0.layers.1.lower",
    "levels.1.0.layers.1.upper",
    "levels.1.0.layers.1.log_s",
    "levels.1.0.layers.1.perm",
    "levels.1.0.layers.1.sign_s",
    "levels.1.0.layers.1.lower_mask",
    "levels.1.0.layers.1.eye",
    "levels.1.0.layers.2.net.0.weight",
    "levels.1.0.layers.2.net.0.bias",
    "levels.1.0.layers.2.net.2.weight",
    "levels.1.0.layers.2.net.2.bias",
    "levels.1.0.layers.2.net.4.log_scale",
    "levels.1.0.layers.2.net.4.conv.weight",
    "levels.1.0.layers.2.net.4.conv.bias",
    "splits.0.prior.log_scale",
    "splits.0.prior.conv.weight",
    "splits.0.prior.conv.bias",
]

#: An additive flow step with a full 1x1 convolution matrix.
FLOW_STEP_KEYS = [
    "layers.0.bias",
    "layers.0.log_scale",
    "layers.0.initialized",
    "layers.1.weight",
    "layers.2.net.0.weight",
    "layers.2.net.0.bias",
    "layers.2.net.2.weight",
    "layers.2.net.2.bias",
    "layers.2.net.4.log_scale",
    "layers.2.net.4.conv.weight",
    "layers.2.net.4.conv.bias",
]


@pytest.mark.parametrize(
    "build, keys",
    [
        (
            lambda: Glow(in_channels=1, image_size=4, levels=2, steps=1, hidden_channels=4),
            GLOW_KEYS,
        ),
        (lambda: FlowStep(4, 4, "additive", lu=False), FLOW_STEP_KEYS),
    ],
    ids=["glow", "flow_step"],
)
def test_state_dict_keys_are_those_of_saved_checkpoints(build, keys):
    model = build()
    assert list(model.state_dict()) == keys
    build().load_state_dict(model.state_dict(), strict=True)


def test_glow_latents_are_flat_and_additive_volume_does_not_depend_on_x():
    glow = _randomise(_glow("affine"))
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) - 0.5
    assert glow(x)[0].shape == (2, 64)
    # CV-Glow: the volume term does not depend on x
    cv_glow = _randomise(_glow("additive"))
    assert cv_glow(x)[0].shape == (2, 64)
    assert torch.allclose(cv_glow.log_prob_parts(x)[1], cv_glow.log_prob_parts(-x)[1])


def test_glow_log_prob_is_prior_plus_log_det():
    glow = _randomise(Glow(in_channels=1, image_size=4, levels=1, steps=1, hidden_channels=4))
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) - 0.5
    log_pz, log_det = glow.log_prob_parts(x)
    assert torch.allclose(glow.log_prob(x), log_pz + log_det)
    # single level: the prior is the learned top Gaussian on z = f(x), evaluated independently
    z, ld = glow(x)
    std = torch.exp(glow.top_log_std).flatten()
    normal = torch.distributions.Normal(glow.top_mean.flatten(), std)
    assert torch.allclose(ld, log_det)
    assert torch.allclose(normal.log_prob(z).sum(1), log_pz)


def test_actnorm_data_dependent_init_and_flag():
    layer = ActNorm(3)
    x = 5 + 3 * torch.randn(256, 3, 4, 4)
    layer.train()
    y, _ = layer(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    assert bool(layer.initialized)
    state = layer.state_dict()
    fresh = ActNorm(3)
    fresh.load_state_dict(state)
    fresh.train()
    before = fresh.bias.detach().clone()
    fresh(torch.randn(8, 3, 4, 4))
    assert torch.equal(fresh.bias.detach(), before)  # loaded => never re-initialised


def test_glow_samples_have_image_shape():
    glow = Glow(in_channels=3, image_size=8, levels=2, steps=1, hidden_channels=8).eval()
    x = glow.sample(4, temperature=0.5)
    assert x.shape == (4, 3, 8, 8) and x.abs().max() <= 0.5


def test_glow_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        Glow(in_channels=1, image_size=10, levels=2)
    with pytest.raises(ValueError, match="coupling"):
        Glow(in_channels=1, image_size=8, levels=1, coupling="spline")


def _normal_log_prob(z, mean, log_std):
    """Independent oracle: ``torch.distributions.Normal``, summed over all but the batch dim."""
    return torch.distributions.Normal(mean, torch.exp(log_std)).log_prob(z).flatten(1).sum(1)


def _split_prior_params(split, h):
    """openai/glow's ``split2d_prior``: ``out = conv_zeros(h)``; mean ``out[:, 0::2]``, log-std
    ``out[:, 1::2]``.

    ``conv_zeros`` is a padded 3x3 convolution times ``exp(3 * log_scale)``; written out here
    from the split's raw weights rather than through :class:`SplitPrior`.
    """
    conv = split.prior.conv
    out = F.conv2d(h, conv.weight, conv.bias, padding=1) * torch.exp(3 * split.prior.log_scale)
    return out[:, 0::2], out[:, 1::2]


def _latents_and_log_prior(glow, x, swap=False):
    """Walk the levels by hand: squeeze, the steps, then (all but the last level) keep the first
    half of the channels and score the second half under the split prior given the first; the
    last level's output is scored under the top Gaussian. ``swap`` reads mean and log-std from
    the wrong channels (to show the test can tell the conventions apart)."""
    latents, log_pz, h = [], torch.zeros(len(x), dtype=x.dtype), x
    for i, steps in enumerate(glow.levels):
        h, _ = glow.squeeze(h)
        for step in steps:
            h, _ = step(h)
        if i < len(glow.splits):
            keep = h.shape[1] // 2
            h, z = h[:, :keep], h[:, keep:]
            mean, log_std = _split_prior_params(glow.splits[i], h)
            if swap:
                mean, log_std = log_std, mean
            log_pz = log_pz + _normal_log_prob(z, mean, log_std)
            latents.append(z)
    latents.append(h)
    log_pz = log_pz + _normal_log_prob(h, glow.top_mean.expand_as(h), glow.top_log_std.expand_as(h))
    return torch.cat([z.flatten(1) for z in latents], 1), log_pz


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_multilevel_glow_log_prob_is_change_of_variables(coupling):
    """A three-level Glow (two split priors and the top prior, all randomised): log p(x) equals
    log p(z), with each latent under its own prior, plus log|det| of the brute-force Jacobian."""
    torch.manual_seed(0)
    glow = Glow(
        in_channels=2, image_size=8, levels=3, steps=2, hidden_channels=8, coupling=coupling
    )
    glow = _randomise(glow, scale=0.1)  # at 0.2 the deepest split prior's log p reaches -1e33
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64) - 0.5
    with torch.no_grad():
        z, log_pz = _latents_and_log_prior(glow, x)
        assert torch.allclose(glow(x)[0], z, atol=1e-12)  # the hand walk is the model's bijection

        def flat(v):
            return glow(v.view(1, 2, 8, 8))[0][0]

        jacobians = [torch.autograd.functional.jacobian(flat, xi.flatten()) for xi in x]
        log_det = torch.stack([torch.linalg.slogdet(j)[1] for j in jacobians])
        model_log_pz, model_log_det = glow.log_prob_parts(x)
        log_p = glow.log_prob(x)
        # the randomisation makes the split priors matter: the swapped convention is far off
        assert (_latents_and_log_prior(glow, x, swap=True)[1] - log_pz).abs().min() > 0.1
    assert torch.allclose(model_log_pz, log_pz, rtol=0, atol=1e-9)
    assert torch.allclose(model_log_det, log_det, rtol=0, atol=1e-8)
    assert torch.allclose(log_p, log_pz + log_det, rtol=0, atol=1e-8)


def test_multilevel_glow_density_integrates_to_one():
    """Importance sampling: E_q[p(x) / q(x)] = 1 for a Gaussian q fitted to the flow's inverse
    images of N(0, I) draws (covariance widened 1.5x). A 16-dimensional two-level Glow, gently
    randomised so that the importance weights stay light-tailed."""
    torch.manual_seed(0)
    glow = Glow(in_channels=1, image_size=4, levels=2, steps=2, hidden_channels=8)
    glow = _randomise(glow, scale=0.05)
    n = 50_000
    with torch.no_grad():
        fit, _ = glow.inverse(torch.randn(20_000, 16, dtype=torch.float64))
        fit = fit.flatten(1)
        q = torch.distributions.MultivariateNormal(fit.mean(0), 1.5 * torch.cov(fit.T))
        x = q.sample((n,))
        w = torch.exp(glow.log_prob(x.view(n, 1, 4, 4)) - q.log_prob(x))
    mean, se = w.mean().item(), w.std().item() / n**0.5
    print(f"integral of p = {mean:.4f} +- {se:.4f}")
    assert se < 0.01
    assert mean == pytest.approx(1.0, abs=max(5 * se, 0.02))


@pytest.mark.parametrize("coupling", ["affine", "additive"])
@pytest.mark.parametrize("lu", [True, False])
def test_a_flow_steps_fused_forward_equals_its_layers_one_after_another(coupling, lu):
    """FlowStep.forward runs ActNorm and the 1x1 convolution as one affine map (for speed);
    output and log-det must be those of the three layers chained, in float64 to 1e-12."""
    torch.manual_seed(0)
    step = _randomise(FlowStep(6, 8, coupling, lu=lu), scale=0.3).double()
    step.layers[0].initialized.fill_(True)  # keep the randomised ActNorm parameters
    x = torch.randn(5, 6, 4, 4, dtype=torch.float64)
    fused, fused_log_det = step(x)
    chained, chained_log_det = step.layers(x)
    torch.testing.assert_close(fused, chained, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused_log_det, chained_log_det, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(fused.square().sum() + fused_log_det.sum(), list(step.parameters()))
    expected = torch.autograd.grad(
        chained.square().sum() + chained_log_det.sum(), list(step.parameters())
    )
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_a_fused_flow_step_still_initialises_actnorm_from_the_first_batch():
    torch.manual_seed(0)
    step = FlowStep(4, 8).train()
    x = 3 + 2 * torch.randn(64, 4, 6, 6)
    step(x)
    assert bool(step.layers[0].initialized)
    normed, _ = step.layers[0](x)
    torch.testing.assert_close(normed.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3, rtol=0)


def test_zero_conv_with_the_gain_folded_in_is_the_convolution_times_the_gain():
    from lit_rev.density.flows import ZeroConv2d

    torch.manual_seed(0)
    layer = _randomise(ZeroConv2d(5, 3), scale=0.5).double()
    x = torch.randn(2, 5, 7, 7, dtype=torch.float64)
    expected = layer.conv(x) * torch.exp(3 * layer.log_scale)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def test_mixing_channels_is_a_one_by_one_convolution_with_or_without_bias():
    from lit_rev.density.flows import mix_channels

    torch.manual_seed(0)
    w, b = torch.randn(6, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(mix_channels(w, x), F.conv2d(x, w.view(6, 6, 1, 1)))
    torch.testing.assert_close(mix_channels(w, x, b), F.conv2d(x, w.view(6, 6, 1, 1), b))
    cl = x.contiguous(memory_format=torch.channels_last)  # any layout in, the same values out
    torch.testing.assert_close(mix_channels(w, cl, b), F.conv2d(x, w.view(6, 6, 1, 1), b))


def test_coupling_convolutions_run_and_get_their_gradients_in_channels_last():
    """The flow's state is NCHW, its coupling convolutions channels-last, each side with its
    gradient in its own layout (oneDNN reorders a gradient that arrives in the other one)."""
    from lit_rev.density.flows import convolve_channels_last

    seen = {}

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            seen["input_cl"] = x.is_contiguous(memory_format=torch.channels_last)
            y = self.conv(x)

            def record(grad):
                seen["grad_cl"] = grad.is_contiguous(memory_format=torch.channels_last)

            y.register_hook(record)
            return y

    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = convolve_channels_last(Recorder(), x)
    assert out.is_contiguous() and seen["input_cl"]
    out.backward(torch.randn(2, 4, 5, 5))
    assert seen["grad_cl"], "the convolution's gradient arrived in NCHW"
    assert x.grad.is_contiguous()


def _coupling_network(in_channels=3, hidden=5, out_channels=4):
    from lit_rev.density.flows import CouplingNetwork

    torch.manual_seed(0)
    return _randomise(CouplingNetwork(in_channels, hidden, out_channels), scale=0.5)


@pytest.mark.parametrize("input_needs_grad", [True, False])
def test_the_coupling_network_node_equals_its_layers_chained(input_needs_grad):
    """CouplingNetwork runs its layers as one node with a hand-written backward (for speed);
    its output and every gradient must be those of the layers chained, in float64."""
    net = _coupling_network()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=input_needs_grad)
    target = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    got, want = net(x), torch.nn.Sequential.forward(net, x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    inputs = [x, *net.parameters()] if input_needs_grad else list(net.parameters())
    got_grads = torch.autograd.grad((got * target).sum(), inputs)
    want_grads = torch.autograd.grad((want * target).sum(), inputs)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_the_fused_nodes_pass_the_finite_difference_gradient_checks_of_first_and_second_order():
    """torch's gradcheck and gradgradcheck (finite differences in float64). The second order
    goes through the nodes' plain-ops reference, as the Hessian analysis needs."""
    from lit_rev.density.flows import _AffineUpdateFunction, _CouplingNetworkFunction

    net = _coupling_network(2, 3, 4)
    first, _, middle, _, last = net
    weights = [first.weight, first.bias, middle.weight, middle.bias, *last.folded()]
    inputs = [torch.randn(1, 2, 3, 3, dtype=torch.float64)] + [w.detach() for w in weights]
    inputs = [t.clone().requires_grad_() for t in inputs]
    assert torch.autograd.gradcheck(_CouplingNetworkFunction.apply, inputs)
    assert torch.autograd.gradgradcheck(_CouplingNetworkFunction.apply, inputs)
    xb = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 6, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_AffineUpdateFunction.apply, (xb, h))
    assert torch.autograd.gradgradcheck(_AffineUpdateFunction.apply, (xb, h))


def test_the_affine_coupling_node_equals_its_plain_ops_in_value_and_gradient():
    """The affine update (x_b + shift) * sigmoid(raw + 2) and its log-det, written as one node,
    against the same formula in autograd ops, with both outputs in the loss."""
    from lit_rev.density.flows import _AffineUpdateFunction

    torch.manual_seed(0)
    xb = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    h = 2 * torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    results = []
    for update in (_AffineUpdateFunction.apply, _AffineUpdateFunction.reference):
        yb, log_det = update(xb, h)
        loss = (yb * weight).sum() + (log_det * torch.arange(1.0, 4.0, dtype=torch.float64)).sum()
        results.append((yb, log_det, *torch.autograd.grad(loss, (xb, h))))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_coupling_networks_convolutions_run_in_channels_last_both_ways():
    """The node's convolutions, forward and backward, get channels-last tensors (oneDNN's fast
    layout on CPU); what comes in and goes out is NCHW, the flow's layout."""
    from torch.utils._python_dispatch import TorchDispatchMode

    layouts = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (
                torch.ops.aten.convolution,
                torch.ops.aten.convolution_backward,
            ):
                layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
            return func(*args, **(kwargs or {}))

    net = _coupling_network().float()
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    with Record():
        out = net(x)
        out.backward(torch.randn(2, 4, 5, 6))
    assert len(layouts) == 6 and all(layouts), layouts
    assert out.is_contiguous() and x.grad.is_contiguous()


def test_the_coupling_network_and_glow_train_under_bfloat16_autocast():
    """Under autocast the coupling runs its plain ops (autocast picks each op's dtype; the
    hand-written backward assumes one dtype throughout)."""
    net = _coupling_network().float()
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()

    torch.manual_seed(0)
    glow = Glow(in_channels=1, image_size=8, levels=2, steps=2, hidden_channels=8)
    x = torch.rand(4, 1, 8, 8) - 0.5
    glow.log_prob(x)  # ActNorm's data-dependent init, in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = -glow.log_prob(x).mean()
    loss.backward()
    grads = [p.grad for p in glow.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

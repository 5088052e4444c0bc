"""Every invertible layer: inverse(forward(x)) == x, and its log-det is log|det| of the
brute-force Jacobian.

A multi-level Glow's log p(x) against the change of variables, each latent under its own prior.
"""

import pytest
import torch
import torch.nn.functional as F

from lit_rev.density import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowStep,
    Glow,
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


LAYERS = {
    "actnorm": lambda: ActNorm(4),
    "invconv_lu": lambda: InvConv1x1(4, lu=True, seed=1),
    "invconv_plain": lambda: InvConv1x1(4, lu=False, seed=1),
    "affine_coupling": lambda: AffineCoupling(4, hidden=8),
    "additive_coupling": lambda: AdditiveCoupling(4, hidden=8),
    "squeeze": lambda: Squeeze(),
    "flow_step_affine": lambda: FlowStep(4, 8, "affine"),
    "flow_step_additive": lambda: FlowStep(4, 8, "additive", lu=False),
}


def _flat_forward(layer, shape):
    def f(v):
        y, _ = layer(v.view(1, *shape))
        return y.flatten()

    return f


@pytest.mark.parametrize("name", LAYERS)
def test_layer_round_trip_and_log_det(name):
    layer = _randomise(LAYERS[name]())
    shape = (4, 4, 4)
    x = torch.randn(3, *shape, dtype=torch.float64)
    y, log_det = layer(x)
    x_back, inv_log_det = layer.inverse(y)
    assert torch.allclose(x_back, x, atol=1e-10)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-10)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(_flat_forward(layer, shape), x[i].flatten())
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-8)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_glow_round_trip_and_log_det(coupling):
    glow = _randomise(
        Glow(in_channels=1, image_size=8, levels=2, steps=2, hidden_channels=8, coupling=coupling)
    )
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) - 0.5
    z, log_det = glow(x)
    assert z.shape == (2, 64)
    x_back, inv_log_det = glow.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-9)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-9)
    jac = torch.autograd.functional.jacobian(
        lambda v: glow(v.view(1, 1, 8, 8))[0][0], x[0].flatten()
    )
    assert log_det[0].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-7)
    if coupling == "additive":
        # CV-Glow: the volume term does not depend on x
        assert torch.allclose(glow.log_prob_parts(x)[1], glow.log_prob_parts(-x)[1])


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

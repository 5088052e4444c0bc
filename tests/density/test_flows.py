"""Every invertible layer: inverse(forward(x)) == x and log-det == log|det| of the brute-force Jacobian."""

import pytest
import torch

from lit_rev.density import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowStep,
    Glow,
    InvConv1x1,
    Squeeze,
)


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its (often identity) initial value."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
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
    glow = _randomise(Glow(in_channels=1, image_size=8, levels=2, steps=2, hidden_channels=8, coupling=coupling))
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) - 0.5
    z, log_det = glow(x)
    assert z.shape == (2, 64)
    x_back, inv_log_det = glow.inverse(z)
    assert torch.allclose(x_back, x, atol=1e-9)
    assert torch.allclose(inv_log_det, -log_det, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda v: glow(v.view(1, 1, 8, 8))[0][0], x[0].flatten())
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

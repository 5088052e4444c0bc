"""VFA (Louizos et al. 2016): known answers for the MMD, and the penalty doing its job."""

import math

import pytest
import torch
from lightning.pytorch import seed_everything

from lit_rev.data import GermanDataModule
from lit_rev.fair import VFAModule
from lit_rev.fair.vfa import mmd_squared
from tests.fair.test_fairlearn_baselines import gap, proxy_set
from tests.trainers import quiet_trainer


def test_mmd_of_identical_samples_is_zero_and_of_shifted_ones_positive():
    a = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    assert float(mmd_squared(a, a)) == pytest.approx(0.0, abs=1e-6)
    shifts = [float(mmd_squared(a, a + d)) for d in (0.5, 1.0, 2.0)]
    assert 0 < shifts[0] < shifts[1] < shifts[2]
    assert float(mmd_squared(a, a + 1.0)) == pytest.approx(float(mmd_squared(a + 1.0, a)))


def test_mmd_of_two_points_is_the_kernel_formula():
    """One point each, distance d: k(0) + k(0) − 2 k(d) = 2 Σ_σ (1 − exp(−d²/2σ²))."""
    d, bandwidths = 1.5, (1.0, 3.0)
    expected = 2 * sum(1 - math.exp(-(d**2) / (2 * s**2)) for s in bandwidths)
    found = mmd_squared(torch.zeros(1, 2), torch.tensor([[d, 0.0]]), bandwidths)
    assert float(found) == pytest.approx(expected, rel=1e-5)


def fitted_vfa(mmd_weight: float, x, y, s, steps: int = 100) -> VFAModule:
    torch.manual_seed(0)
    module = VFAModule(
        mmd_weight=mmd_weight,
        z1_dim=8,
        z2_dim=4,
        hidden=[32],
        input_dim=x.shape[1],
        protected_classes=[2],
    )
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = module.losses(x, y, s)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.eval()


def test_a_larger_mmd_penalty_lowers_discrimination_on_a_proxy_set():
    """``x[:, 0]`` is a proxy of ``s`` and drives the label: without the penalty the code
    carries it (gap about 0.34); with β = 10 the groups' codes match (gap about 0.02)."""
    x, y, s = proxy_set(512, seed=0)
    test_x, test_y, test_s = proxy_set(1000, seed=1)
    gaps = {}
    for beta in (0.0, 10.0):
        module = fitted_vfa(beta, x, y, s)
        with torch.no_grad(), module.given(test_s):
            p = module.predict_proba(test_x)
            gaps[beta] = gap(p, test_s)
            code = module.representation(test_x)
        if beta == 0.0:  # it did learn the label
            assert float(((p > 0.5).float() == test_y).float().mean()) > 0.8
    assert gaps[0.0] > 0.2
    assert gaps[10.0] < gaps[0.0] / 3
    assert code.shape == (1000, 8)


def test_the_code_and_the_reconstruction_are_conditioned_on_s():
    module = VFAModule(input_dim=5, protected_classes=[2, 3])
    x = torch.randn(4, 5)
    s0 = torch.tensor([[0, 0]] * 4)
    s1 = torch.tensor([[1, 2]] * 4)
    assert module.one_hot(s1).tolist()[0] == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert not torch.equal(module.encode(x, s0)[0], module.encode(x, s1)[0])
    losses = module.losses(x, torch.tensor([0.0, 1.0, 0.0, 1.0]), s1)
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["mmd"]) == 0.0  # one group per attribute in the batch: nothing to match
    with pytest.raises(ValueError, match="mmd_bandwidths"):
        VFAModule(mmd_bandwidths=[0.0])
    with pytest.raises(ValueError, match="mmd_weight"):
        VFAModule(mmd_weight=-1.0)


def test_fits_and_reports_every_metric_with_the_probe(tmp_path):
    seed_everything(0)
    data = GermanDataModule(batch_size=64, protected=["age", "sex"])
    module = VFAModule(probes=["logistic"], lr=3e-3)
    trainer = quiet_trainer(tmp_path, max_epochs=5)
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data, verbose=False)
    r = module.test_results
    assert 0.65 < r["accuracy"] <= 1.0  # German's majority rate is 0.70
    for attribute in ("age", "sex"):
        assert 0.0 <= r[f"discrimination_{attribute}"] <= 1.0
        assert 0.0 <= r[f"probe_logistic_acc_{attribute}"] <= 1.0


def test_the_loss_is_the_weighted_sum_of_its_terms_each_computed_independently():
    """Every term of the module docstring's L, recomputed here with torch.distributions and a
    hand-written kernel from the module's own networks and the same noise; the loss is
    reconstruction + KL(z1) + KL(z2) + α·label + β·MMD with α, β away from 1."""
    from torch.distributions import Normal, kl_divergence

    x, y, s = proxy_set(64, seed=1)
    torch.manual_seed(0)
    module = VFAModule(
        z1_dim=3,
        z2_dim=2,
        hidden=[8],
        label_weight=0.7,
        mmd_weight=2.5,
        mmd_bandwidths=[1.0, 3.0],
        input_dim=4,
        protected_classes=[2],
    )
    torch.manual_seed(5)
    got = module.losses(x, y, s)

    torch.manual_seed(5)  # the same draws, in the same order, as the module's reparametrisation
    with torch.no_grad():
        s_hot = torch.nn.functional.one_hot(s[:, 0], 2).float()
        y_col = y[:, None]
        mean1, log_var1 = module.encoder_z1(torch.cat([x, s_hot], 1))
        z1 = mean1 + torch.randn(len(x), 3) * torch.exp(log_var1 / 2)
        mean2, log_var2 = module.encoder_z2(torch.cat([z1, y_col], 1))
        z2 = mean2 + torch.randn(len(x), 2) * torch.exp(log_var2 / 2)
        prior_mean1, prior_log_var1 = module.decoder_z1(torch.cat([z2, y_col], 1))
        x_hat = module.decoder_x(torch.cat([z1, s_hot], 1))
        q_z1 = Normal(mean1, torch.exp(log_var1 / 2))
        p_z1 = Normal(prior_mean1, torch.exp(prior_log_var1 / 2))
        expected = {
            "reconstruction": ((x - x_hat) ** 2).sum(1).mean() / 2,
            "kl_z1": (q_z1.log_prob(z1).sum(1) - p_z1.log_prob(z1).sum(1)).mean(),
            "kl_z2": kl_divergence(
                Normal(mean2, torch.exp(log_var2 / 2)), Normal(torch.zeros(2), torch.ones(2))
            )
            .sum(1)
            .mean(),
        }
        p = torch.sigmoid(module.classifier(z1)[:, 0])
        expected["label"] = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
        a, b = mean1[s[:, 0] == 0], mean1[s[:, 0] == 1]

        def k(u, v):
            d2 = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
            return torch.exp(-d2 / 2) + torch.exp(-d2 / 18)

        expected["mmd"] = k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean()
    for term, value in expected.items():
        assert float(got[term]) == pytest.approx(float(value), rel=1e-4, abs=1e-5), term
        assert abs(float(value)) > 1e-3, term  # each term weighs in the sum
    total = (
        expected["reconstruction"]
        + expected["kl_z1"]
        + expected["kl_z2"]
        + 0.7 * expected["label"]
        + 2.5 * expected["mmd"]
    )
    assert float(got["loss"]) == pytest.approx(float(total), rel=1e-5)

"""PixelCNN++ and the VAE: causality, exact normalisation, the importance-weighted bound."""

import math

import pytest
import torch

from lit_rev.density import VAE, DensityModule, PixelCNNPP
from lit_rev.density.discretized import (
    discretized_logistic_log_prob,
    discretized_mixture_log_prob,
    mixture_param_count,
    sample_discretized_mixture,
)


def all_images(channels, size, n_bits):
    values = torch.arange(2**n_bits)
    return torch.cartesian_prod(*[values] * (channels * size * size)).view(-1, channels, size, size)


def _randomise(model, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_discretized_logistic_normalises_for_any_parameters():
    k = torch.arange(32).view(-1, 1)
    mean = torch.tensor([[-3.0, -0.2, 0.0, 0.9, 4.0]], dtype=torch.float64)
    log_scale = torch.tensor([[-9.0, -2.0, 0.0, 1.0, -5.0]], dtype=torch.float64)
    total = torch.exp(discretized_logistic_log_prob(k, mean, log_scale, n_bits=5)).sum(0)
    assert torch.allclose(total, torch.ones(5, dtype=torch.float64), atol=1e-12)


def test_mixture_sampler_follows_the_likelihood():
    torch.manual_seed(0)
    params = torch.randn(1, mixture_param_count(3, 2), 1, 1, dtype=torch.float64)
    k = all_images(3, 1, 1)  # 8 one-pixel RGB images of 1 bit
    probs = torch.exp(
        discretized_mixture_log_prob(k, params.expand(len(k), -1, -1, -1), 2, n_bits=1)
    )
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    draws = sample_discretized_mixture(params.expand(20000, -1, -1, -1), 3, 2, n_bits=1)
    index = (draws[:, 0] * 4 + draws[:, 1] * 2 + draws[:, 2]).flatten()
    freq = torch.bincount(index, minlength=8).double() / len(index)
    assert torch.allclose(freq, probs, atol=0.015)


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnnpp_is_causal(channels):
    """d(output at position i) / d(input at position j) = 0 for every j >= i in raster order,
    all channels."""
    torch.manual_seed(0)
    model = _randomise(
        PixelCNNPP(
            channels, 8, 8, resnets_per_scale=1, filters=8, num_mixtures=2, scales=3, dropout=0.0
        )
    ).double()
    size = 8
    x = torch.rand(1, channels, size, size, dtype=torch.float64, requires_grad=True)
    out = model(x)
    for i in range(size * size):
        row, col = divmod(i, size)
        (grad,) = torch.autograd.grad(out[0, :, row, col].sum(), x, retain_graph=True)
        influence = grad.abs().sum(1).flatten()  # per input position, channels summed
        assert influence[i:].max().item() == 0.0, (
            f"output {i} sees input {int(influence[i:].argmax()) + i}"
        )
        if i > 0:
            assert influence[:i].max().item() > 0.0  # and it does see the past


@pytest.mark.parametrize("channels,size,n_bits", [(1, 2, 2), (3, 2, 1)])
def test_pixelcnnpp_normalises(channels, size, n_bits):
    """The probabilities of all (2**n_bits)**D images sum to 1 (256 for 2-bit 1x2x2; 4096 for
    1-bit 3x2x2)."""
    torch.manual_seed(0)
    model = PixelCNNPP(
        channels,
        size,
        n_bits,
        resnets_per_scale=1,
        filters=8,
        num_mixtures=3,
        scales=2,
        dropout=0.0,
    )
    model = _randomise(model).double().eval()
    k = all_images(channels, size, n_bits)
    with torch.no_grad():
        total = torch.exp(model.log_prob(k)).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-10)
    module = DensityModule(model, n_bits=n_bits)  # bits/dim of an exact mass
    bpd = module.scores(k)["bpd"].double()
    assert torch.exp(-bpd * k[0].numel() * math.log(2)).sum().item() == pytest.approx(1.0, abs=1e-6)


def test_pixelcnnpp_samples_are_valid_images():
    model = PixelCNNPP(
        1, 4, 3, resnets_per_scale=1, filters=8, num_mixtures=2, scales=2, dropout=0.0
    )
    k = model.sample(3)
    assert k.shape == (3, 1, 4, 4) and k.dtype == torch.long and k.min() >= 0 and k.max() < 8
    with pytest.raises(ValueError, match="divisible"):
        PixelCNNPP(1, 6, 8, scales=3)


def test_vae_decoder_and_marginal_normalise():
    """p(k | z) sums to 1 over all 256 2-bit 1x2x2 images for every z, so the marginal
    E_{p(z)} p(k | z) does too.

    The importance-weighted bound's exp(L_S) = (1/S) sum_s p(k, z_s) / q(z_s | k) is an unbiased
    estimate of P(k), so sum_k exp(L_S(k)) is 1 in expectation, not <= 1 draw by draw (about a
    quarter to a half of single draws exceed 1). Averaged over 100 draws it is 1 within five
    standard errors. (tests/density/test_vae_bounds.py checks each P(k) against quadrature.)
    """
    torch.manual_seed(0)
    vae = (
        _randomise(VAE(1, 2, n_bits=2, latent_dim=2, hidden_channels=8, importance_samples=8))
        .double()
        .eval()
    )
    k = all_images(1, 2, 2)
    z = torch.randn(5, 2, dtype=torch.float64)
    with torch.no_grad():
        lik = torch.stack([vae.log_likelihood(k, zi.expand(len(k), -1)) for zi in z])  # (5, 256)
        assert torch.allclose(torch.exp(lik).sum(1), torch.ones(5, dtype=torch.float64), atol=1e-12)
        marginal = torch.exp(lik).mean(0)
        assert marginal.sum().item() == pytest.approx(1.0, abs=1e-12)

        # q wider than the prior: the weights p(k, z) / q(z | k) are bounded, so the standard
        # error below is trustworthy (with a narrow q their heavy tail makes the mean run low)
        vae.to_posterior.weight.mul_(0.1)
        vae.to_posterior.bias[2:] = 0.3
        torch.manual_seed(1)
        totals = torch.stack([torch.exp(vae.iwae_bound(k)).sum() for _ in range(100)])
    se = totals.std().item() / math.sqrt(len(totals))
    above = int((totals > 1).sum())
    print(f"sum_k exp(L_8): mean {totals.mean():.4f} +- {se:.4f}, above 1 in {above} of 100")
    assert se < 0.01
    assert totals.mean().item() == pytest.approx(1.0, abs=5 * se)


def test_vae_importance_weighted_bound_is_above_elbo_and_rises_with_k():
    torch.manual_seed(0)
    vae = (
        _randomise(VAE(1, 4, n_bits=3, latent_dim=4, hidden_channels=8), scale=0.2).double().eval()
    )
    k = torch.randint(0, 8, (200, 1, 4, 4))
    with torch.no_grad():
        # same draws: log-mean-exp >= mean (Jensen), image by image
        w = vae.log_weights(k, 32)
        iwae = torch.logsumexp(w, 0) - math.log(32)
        assert (iwae >= w.mean(0) - 1e-12).all()
        # in expectation the bound rises with k and L_1 is the ELBO
        bounds = {
            s: torch.stack([vae.iwae_bound(k, s).mean() for _ in range(4)]).mean().item()
            for s in (1, 4, 32)
        }
        elbo = torch.stack([vae.elbo(k).mean() for _ in range(20)]).mean().item()
    assert bounds[1] < bounds[4] < bounds[32]
    assert elbo == pytest.approx(
        bounds[1], abs=0.05 * abs(elbo)
    )  # closed-form KL vs sampled: same bound
    assert elbo < bounds[32]


def test_vae_log_prob_is_elbo_in_training_and_bound_in_eval():
    vae = VAE(1, 8, n_bits=4, latent_dim=3, hidden_channels=8, importance_samples=5, chunk_size=2)
    k = torch.randint(0, 16, (3, 1, 8, 8))
    assert vae.train().log_prob(k).shape == (3,)
    assert vae.eval().log_prob(k).shape == (3,)
    assert vae.log_weights(k, 5).shape == (5, 3)
    assert vae.sample(2).max() < 16

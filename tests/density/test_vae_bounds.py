"""The VAE's bounds term by term against independent oracles, in float64.

* ``elbo`` = log p(k | z) - KL(q || N(0, I)), the KL from ``torch.distributions``;
* ``log_weights`` = log p(k | z) + log N(z; 0, I) - log q(z | k), checked through its mean,
  which is the ELBO;
* ``log_prob`` is the ELBO in training and the importance-weighted bound in eval mode;
* on a space small enough to enumerate, the exact P(k) (the decoder integrated over a 2-D
  latent by Gauss-Hermite quadrature) against what the bounds estimate: exp(L_S) is an unbiased
  estimate of P(k), L_S is below log P(k) in expectation, and so is the ELBO, whose exact value
  the quadrature also gives.

Where the decoder is made to ignore ``z`` (``from_latent.weight = 0``), ``p(k | z)`` is a
constant ``c(k)`` and ``P(k) = c(k)`` exactly, so the ELBO is deterministic and every Monte-Carlo
quantity has a closed-form target.
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from lit_rev.density import VAE
from lit_rev.density.discretized import discretized_logistic_log_prob
from tests.density.test_discrete_models import _randomise, all_images


def _vae(**kwargs) -> VAE:
    torch.manual_seed(0)
    return _randomise(VAE(**kwargs), scale=0.3).double()


def _ignore_latent(vae: VAE) -> VAE:
    """Decoder output independent of ``z``: ``p(k | z) = c(k)``, so ``P(k) = c(k)`` exactly."""
    with torch.no_grad():
        vae.from_latent.weight.zero_()
    return vae


def _narrow_posterior(vae: VAE) -> VAE:
    """q(z | k) still depends on k, but with log-std near -0.7 in every dimension (a randomised
    encoder gives log-stds of both signs that can cancel in a sum), so a term that is off in
    the log-std shifts every image by about 0.35 nats per latent dimension."""
    with torch.no_grad():
        vae.to_posterior.weight.mul_(0.05)
        vae.to_posterior.bias[vae.latent_dim :] = -0.7
    return vae


def _closed_form_kl(mean, log_std):
    return kl_divergence(Normal(mean, torch.exp(log_std)), Normal(0.0, 1.0)).sum(-1)


def _constant_log_likelihood(vae, k):
    return vae.log_likelihood(k, torch.zeros(len(k), vae.latent_dim, dtype=torch.float64))


def test_elbo_is_log_likelihood_minus_closed_form_kl():
    """With p(k | z) = c(k) the one-sample ELBO is exact: log c(k) - KL(q(z | k) || N(0, I)),
    in training mode ``log_prob`` too."""
    vae = _vae(in_channels=1, image_size=4, n_bits=3, latent_dim=4, hidden_channels=8)
    vae = _narrow_posterior(_ignore_latent(vae))
    k = torch.randint(0, 8, (16, 1, 4, 4))
    with torch.no_grad():
        mean, log_std = vae.posterior(k)
        expected = _constant_log_likelihood(vae, k) - _closed_form_kl(mean, log_std)
        elbo = vae.elbo(k)
    assert (log_std < -0.5).all() and mean.std(0).min() > 0.01  # k-dependent, narrow
    assert torch.allclose(elbo, expected, rtol=0, atol=1e-10)
    assert torch.allclose(vae.train().log_prob(k).detach(), expected, rtol=0, atol=1e-10)


def test_log_weights_average_to_the_elbo():
    """E_q[log p(k, z) - log q(z | k)] = log p(k | .) - KL: the sampled weights' mean, within
    five standard errors, for each image (a log q with the wrong log-std shifts every weight)."""
    vae = _vae(in_channels=1, image_size=4, n_bits=3, latent_dim=4, hidden_channels=8)
    vae = _narrow_posterior(_ignore_latent(vae))
    k = torch.randint(0, 8, (8, 1, 4, 4))
    samples = 4000
    with torch.no_grad():
        mean, log_std = vae.posterior(k)
        expected = _constant_log_likelihood(vae, k) - _closed_form_kl(mean, log_std)
        torch.manual_seed(1)
        w = vae.log_weights(k, samples)
    se = w.std(0) / math.sqrt(samples)
    print(f"max |mean weight - ELBO| / se = {((w.mean(0) - expected).abs() / se).max():.2f}")
    assert (0.5 * log_std.sum(1).abs() > 20 * se).all()  # a half log-std would be far outside
    assert ((w.mean(0) - expected).abs() < 5 * se).all()


def test_eval_log_prob_is_the_importance_weighted_bound_not_the_elbo():
    """With p(k | z) = c(k) and a posterior wider than the prior (bounded weights), the bound
    L_2048 is within 0.25 of log P(k) = log c(k) (0.11 at most over 20 seeds x 8 images), while
    the ELBO is KL = 1.76 nats below it."""
    vae = _vae(
        in_channels=1,
        image_size=4,
        n_bits=3,
        latent_dim=4,
        hidden_channels=8,
        importance_samples=2048,
    )
    vae = _ignore_latent(vae)
    mean = torch.tensor([0.8, -0.6, 0.5, -0.9], dtype=torch.float64)
    log_std = torch.tensor([0.3, 0.5, 0.2, 0.4], dtype=torch.float64)
    with torch.no_grad():
        vae.to_posterior.weight.zero_()
        vae.to_posterior.bias.copy_(torch.cat([mean, log_std]))
    kl = _closed_form_kl(mean, log_std).item()
    k = torch.randint(0, 8, (8, 1, 4, 4))
    with torch.no_grad():
        log_p = _constant_log_likelihood(vae, k)
        torch.manual_seed(1)
        bound = vae.eval().log_prob(k)
        elbo = vae.train().log_prob(k)
    print(f"KL = {kl:.4f}; max |L_2048 - log P| = {(bound - log_p).abs().max():.4f}")
    assert kl == pytest.approx(1.7589, abs=1e-4)
    assert torch.allclose(elbo, log_p - kl, rtol=0, atol=1e-10)
    assert ((bound - log_p).abs() < 0.25).all()


def _gauss_hermite_2d(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``(n*n, 2)`` and weights ``(n*n,)`` with sum_i w_i f(z_i) ~ E_{N(0, I)} f(z)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    x, w = torch.from_numpy(x), torch.from_numpy(w / math.sqrt(2 * math.pi))
    return torch.cartesian_prod(x, x), torch.outer(w, w).flatten()


def _exact_marginal(vae, k, n):
    """log P(k) = log E_{N(0, I)} p(k | z), by an n x n Gauss-Hermite rule, for all k at once."""
    z, w = _gauss_hermite_2d(n)
    mean, log_scale = vae.decode(z)
    out = []
    for chunk in k.split(32):
        lik = discretized_logistic_log_prob(chunk.unsqueeze(1), mean, log_scale, vae.n_bits)
        out.append(torch.logsumexp(lik.flatten(2).sum(2) + torch.log(w), 1))
    return torch.cat(out)


@pytest.mark.slow
def test_bounds_against_the_exact_marginal_of_a_tiny_vae():
    """All 256 2-bit 1x2x2 images, 2-D latent. The exact log P(k) by quadrature (48 and 64
    nodes a side agree to 2e-3; the ELU decoder is not smooth enough for Gauss-Hermite to do
    much better, but that is far below the Monte-Carlo errors) sums to one over k, and
    against it:

    * exp(L_8) is unbiased: its average over 100 draws is P(k) within five standard errors;
    * L_8 is a lower bound in expectation: its average is below log P(k) (to three errors);
    * the exact ELBO (quadrature over q) is below log P(k), and the sampled ELBO, averaged
      over images and draws, is the exact one averaged over images; L_8 is above it.
    """
    vae = _vae(in_channels=1, image_size=2, n_bits=2, latent_dim=2, hidden_channels=8).eval()
    with torch.no_grad():  # q wider than the prior: bounded weights, trustworthy standard errors
        vae.to_posterior.weight.mul_(0.1)
        vae.to_posterior.bias[2:] = 0.3
    k = all_images(1, 2, 2)
    repeats = 100
    with torch.no_grad():
        log_p = _exact_marginal(vae, k, 64)
        assert torch.allclose(_exact_marginal(vae, k, 48), log_p, rtol=0, atol=2e-3)
        assert torch.exp(log_p).sum().item() == pytest.approx(1.0, abs=1e-12)

        torch.manual_seed(1)
        bounds = torch.stack([vae.iwae_bound(k, 8) for _ in range(repeats)])  # (repeats, 256)
        elbos = torch.stack([vae.elbo(k) for _ in range(repeats)])

        # exact ELBO: E_q log p(k | z) by quadrature over z = mean + std * node, minus the KL
        mean, log_std = vae.posterior(k)
        nodes, weights = _gauss_hermite_2d(24)
        z = mean.unsqueeze(1) + torch.exp(log_std).unsqueeze(1) * nodes  # (256, 24**2, 2)
        k_rep = k.repeat_interleave(len(nodes), 0)
        lik = vae.log_likelihood(k_rep, z.reshape(-1, 2)).view(len(k), -1)
        exact_elbo = lik @ weights - _closed_form_kl(mean, log_std)

    def mean_se(t):
        return t.mean(0), t.std(0) / math.sqrt(repeats)

    est, se = mean_se(torch.exp(bounds))
    p = torch.exp(log_p)
    print(
        f"max |mean exp(L_8) - P| / se = {((est - p).abs() / se).max():.2f}; "
        f"sum_k mean exp(L_8) = {est.sum():.4f}"
    )
    assert ((est - p).abs() < 5 * se).all()
    avg_bound, se_bound = mean_se(bounds)
    assert (avg_bound < log_p + 3 * se_bound).all()
    assert (exact_elbo < log_p).all()
    # one image's sampled ELBO is too skewed for a per-image test: average over all images
    avg_elbo, se_elbo = mean_se(elbos.mean(1))
    print(
        f"ELBO averaged over images: sampled {avg_elbo:.4f} +- {se_elbo:.4f}, "
        f"exact {exact_elbo.mean():.4f}"
    )
    assert (avg_elbo - exact_elbo.mean()).abs() < 5 * se_elbo
    assert avg_bound.mean() > avg_elbo

"""A convolutional VAE over quantised pixels (Kingma & Welling 2014).

The VAE of Nalisnick et al. 2019:

    encoder  q(z | k) = N(mu(k), diag sigma(k)^2)           prior  p(z) = N(0, I)
    decoder  p(k | z) = prod_i DiscretisedLogistic(k_i; m_i(z), s_i(z))

Training maximises the evidence lower bound (ELBO, one reparameterised sample)

    log P(k) >= E_q[ log p(k | z) + log p(z) - log q(z | k) ],

and evaluation reports the importance-weighted bound (Burda et al. 2016, eq. 8)

    log P(k) >= L_S = E[ log (1/S) sum_s p(k, z_s) / q(z_s | k) ],   z_s ~ q(z | k),

which rises with ``S`` toward ``log P(k)``, so test bits/dim are as tight as the paper's.

The bound is random (it depends on the draws ``z_s``). At evaluation the draws for an image
come from a generator seeded by ``eval_seed`` and the image's own pixels, so an image gets the
same score in every run, batch, batch position, DDP layout and device (up to float rounding);
``eval_seed=None`` draws from the global random stream instead.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn as nn

from lit_rev.density.discretized import (
    discretized_logistic_log_prob,
    from_unit_range,
    log_mean_exp,
    to_unit_range,
)


def _halvings(size: int, most: int = 2) -> int:
    """How many stride-2 halvings (at most ``most``) keep ``size`` an integer."""
    n = 0
    while n < most and size % 2 == 0 and size > 1:
        size, n = size // 2, n + 1
    return n


class VAE(nn.Module):
    """Convolutional VAE with a diagonal Gaussian posterior and a discretised logistic decoder.

    Args:
        in_channels: channels of the images.
        image_size: height and width of the images.
        n_bits: bits per pixel value (the images are integers in ``[0, 2**n_bits)``).
        latent_dim: size of ``z``.
        hidden_channels: width of the conv stacks (doubled after each halving).
        importance_samples: ``S`` of the importance-weighted bound ``log_prob`` returns in
            eval mode (training mode returns the one-sample ELBO).
        chunk_size: importance samples evaluated per decoder pass (memory).
        eval_seed: seed of the importance samples in eval mode: image ``k`` draws its ``z_s``
            from a generator seeded by ``(eval_seed, k)`` (:meth:`seeded_noise`), so its score
            does not depend on the run, the batch or the device; ``None``: the global stream.
    """

    #: ``log_prob`` is (a lower bound on) a log-probability *mass* of integer images.
    likelihood = "mass"

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        n_bits: int = 8,
        latent_dim: int = 32,
        hidden_channels: int = 64,
        importance_samples: int = 100,
        chunk_size: int = 16,
        eval_seed: int | None = 0,
    ):
        super().__init__()
        if eval_seed is not None and not 0 <= int(eval_seed) < 2**63:
            raise ValueError(f"eval_seed must be None or an integer in [0, 2**63), got {eval_seed}")
        self.eval_seed = None if eval_seed is None else int(eval_seed)
        self.in_channels = in_channels
        self.image_size = image_size
        self.n_bits = n_bits
        self.latent_dim = latent_dim
        self.importance_samples = importance_samples
        self.chunk_size = chunk_size
        halvings = _halvings(image_size)
        self.base_size = image_size // 2**halvings
        width = hidden_channels * 2 ** max(halvings - 1, 0)
        self.base_channels = width

        layers = [nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.ELU()]
        c = hidden_channels
        for i in range(halvings):
            out = hidden_channels * 2**i
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ELU()]
            c = out
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.to_posterior = nn.Linear(c * self.base_size**2, 2 * latent_dim)

        self.from_latent = nn.Linear(latent_dim, width * self.base_size**2)
        layers, c = [nn.ELU()], width
        for i in reversed(range(halvings)):
            out = hidden_channels * 2 ** max(i - 1, 0)
            layers += [nn.ConvTranspose2d(c, out, 4, stride=2, padding=1), nn.ELU()]
            c = out
        self.decoder = nn.Sequential(*layers, nn.Conv2d(c, 2 * in_channels, 3, padding=1))

    @property
    def num_dims(self) -> int:
        """Dimensions ``D`` of one image (``C * H * W``)."""
        return self.in_channels * self.image_size**2

    def posterior(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log standard deviation of ``q(z | k)``, each ``(N, latent_dim)``."""
        h = self.to_posterior(
            self.encoder(to_unit_range(k, self.n_bits, self.from_latent.weight.dtype))
        )
        mean, log_std = h.chunk(2, 1)
        return mean, log_std.clamp(-10, 5)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel logistic mean and log-scale of ``p(k | z)``, each ``(N, C, H, W)``.

        The mean is in the ``[-1, 1]`` units of :func:`~lit_rev.density.discretized.to_unit_range`.
        """
        h = self.from_latent(z).view(-1, self.base_channels, self.base_size, self.base_size)
        mean, log_scale = self.decoder(h).chunk(2, 1)
        return mean, log_scale

    def log_likelihood(self, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(k | z)``, ``(N,)``: the discretised logistic over every pixel."""
        mean, log_scale = self.decode(z)
        return discretized_logistic_log_prob(k, mean, log_scale, self.n_bits).flatten(1).sum(1)

    def seeded_noise(self, k: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
        """Standard normal draws ``(samples, N, latent_dim)``, seeded per image.

        Image ``n`` draws its own from a CPU generator seeded by a hash of ``seed``, its shape
        and its pixel values, so its draws do not depend on the other images of the batch, on
        its position, or on the device.
        """
        images = k.detach().to("cpu", torch.int64).contiguous()
        header = seed.to_bytes(8, "little") + str(tuple(images.shape[1:])).encode()
        draws = []
        for image in images:
            digest = hashlib.blake2b(header + image.numpy().tobytes(), digest_size=8).digest()
            g = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
            draws.append(torch.randn(samples, self.latent_dim, generator=g))
        return torch.stack(draws, 1)

    def log_weights(self, k: torch.Tensor, samples: int, seed: int | None = None) -> torch.Tensor:
        """``log p(k, z_s) - log q(z_s | k)`` for ``samples`` draws ``z_s ~ q(z | k)``: ``(S, N)``.

        ``seed``: draw with :meth:`seeded_noise` (reproducible per image); ``None``: from the
        global random stream.
        """
        mean, log_std = self.posterior(k)
        noise = None
        if seed is not None:
            noise = self.seeded_noise(k, samples, seed).to(mean.device, mean.dtype)
        out = []
        for start in range(0, samples, self.chunk_size):
            s = min(self.chunk_size, samples - start)
            if noise is None:
                eps = torch.randn(s, *mean.shape, dtype=mean.dtype, device=mean.device)
            else:
                eps = noise[start : start + s]
            z = mean + torch.exp(log_std) * eps  # (s, N, latent)
            log_q = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_prior = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            k_rep = k.unsqueeze(0).expand(s, *k.shape).reshape(-1, *k.shape[1:])
            log_lik = self.log_likelihood(k_rep, z.reshape(-1, self.latent_dim)).view(s, -1)
            out.append(log_lik + log_prior - log_q)
        return torch.cat(out)

    def elbo(self, k: torch.Tensor) -> torch.Tensor:
        """One-sample reparameterised ELBO, ``(N,)``.

        The KL term is taken in closed form, which has a lower variance than sampling it.
        """
        mean, log_std = self.posterior(k)
        z = mean + torch.exp(log_std) * torch.randn_like(mean)
        kl = 0.5 * (mean**2 + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(1)
        return self.log_likelihood(k, z) - kl

    def iwae_bound(
        self, k: torch.Tensor, samples: int | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Importance-weighted bound ``L_S``, ``(N,)``.

        ``S = samples`` (default ``importance_samples``). ``seed``: per-image seeded draws
        (:meth:`seeded_noise`); ``None``: from the global random stream.
        """
        return log_mean_exp(self.log_weights(k, samples or self.importance_samples, seed), 0)

    def log_prob(self, k: torch.Tensor) -> torch.Tensor:
        """Lower bound on ``log P(k)`` (natural log, ``(N,)``).

        The ELBO in training; ``L_S`` in eval mode, its draws seeded per image by ``eval_seed``.
        """
        return self.elbo(k) if self.training else self.iwae_bound(k, seed=self.eval_seed)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``n`` integer images: ``z ~ N(0, temperature^2 I)``, then every pixel from ``p(k | z)``.

        The pixels are drawn independently given ``z``, as the decoder models them.
        """
        z = temperature * torch.randn(n, self.latent_dim, device=self.from_latent.weight.device)
        mean, log_scale = self.decode(z)
        u = torch.rand_like(mean).clamp(1e-5, 1 - 1e-5)
        return from_unit_range(
            mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u)), self.n_bits
        )

"""Discretised logistic likelihoods over quantised pixels (Salimans et al. 2017, Sec. 2.1).

A pixel value ``k`` in ``{0, ..., K-1}`` (``K = 2**n_bits``) sits at the centre
``x_k = 2 k / (K - 1) - 1`` of a bin of half-width ``1 / (K - 1)`` in ``[-1, 1]``. With a
logistic of mean ``mu`` and scale ``s``:

    P(k) = sigmoid((x_k + 1/(K-1) - mu) / s) - sigmoid((x_k - 1/(K-1) - mu) / s)

where the first bin extends to ``-inf`` and the last to ``+inf``, so the ``K`` masses sum
to exactly 1 (the edge bins absorb the tails). Every log-mass here is computed in closed,
numerically stable form (no ``1e-12`` clamps), so normalisation holds to float precision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MIN_LOG_SCALE = -7.0


def to_unit_range(k: torch.Tensor, n_bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer pixels ``k`` in ``[0, 2**n_bits)`` -> bin centres in ``[-1, 1]``."""
    return k.to(dtype) * (2.0 / (2**n_bits - 1)) - 1.0


def from_unit_range(x: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Continuous values -> the integer pixel whose bin holds them (int64 in ``[0, 2**n_bits)``)."""
    levels = 2**n_bits - 1
    return torch.round((x.clamp(-1, 1) + 1) * (levels / 2)).long()


def _log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(a) - sigmoid(b))`` for ``a = b + width``, ``width > 0``, stably.

    ``sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(-width))`` (``width`` passed
    directly, not as ``a - b``, so a very wide logistic keeps its tiny, nonzero bin mass).
    """
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-width))


def discretized_logistic_log_prob(
    k: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, n_bits: int
) -> torch.Tensor:
    """Elementwise ``log P(k)`` under a discretised logistic on ``[-1, 1]``.

    The logistic has location ``mean`` and scale ``exp(log_scale)``.

    ``k`` is integer, ``mean``/``log_scale`` broadcast against it; returns the same shape.
    """
    top = 2**n_bits - 1
    x = to_unit_range(k, n_bits, mean.dtype)
    inv_scale = torch.exp(-log_scale.clamp_min(MIN_LOG_SCALE))
    half_bin = 1.0 / top
    upper = (x - mean + half_bin) * inv_scale
    lower = (x - mean - half_bin) * inv_scale
    middle = _log_sigmoid_difference(upper, lower, 2 * half_bin * inv_scale)
    first = F.logsigmoid(upper)  # k = 0: the bin reaches -inf
    last = F.logsigmoid(-lower)  # k = K-1: the bin reaches +inf
    return torch.where(k == 0, first, torch.where(k == top, last, middle))


def mixture_param_count(channels: int, num_mixtures: int) -> int:
    """Output channels a network needs for :func:`discretized_mixture_log_prob`.

    Per mixture one logit, ``C`` means, ``C`` log-scales and ``C (C-1) / 2`` channel
    coefficients.
    """
    return num_mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def _split_mixture_params(params: torch.Tensor, channels: int, num_mixtures: int):
    """Split the network output ``(N, P, H, W)`` into the mixture's parameters.

    Logits ``(N, M, H, W)``, means and log-scales ``(N, M, C, H, W)``, channel coefficients
    ``(N, M, C(C-1)/2, H, W)``.
    """
    n, _, h, w = params.shape
    m, c = num_mixtures, channels
    logits = params[:, :m]
    rest = params[:, m:].reshape(n, m, -1, h, w)
    means, log_scales = rest[:, :, :c], rest[:, :, c : 2 * c].clamp_min(MIN_LOG_SCALE)
    coeffs = torch.tanh(rest[:, :, 2 * c :])
    return logits, means, log_scales, coeffs


def _conditioned_means(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PixelCNN++'s channel autoregression: ``mu_c + sum_{j<c} coeff_{c,j} x_j``.

    ``x`` holds the channels' values, so channel ``c`` depends on the earlier ones only.
    """
    channels = means.shape[2]
    out, pair = [means[:, :, 0]], 0
    for c in range(1, channels):
        shift = sum(coeffs[:, :, pair + j] * x[:, None, j] for j in range(c))
        pair += c
        out.append(means[:, :, c] + shift)
    return torch.stack(out, 2)


def discretized_mixture_log_prob(
    k: torch.Tensor, params: torch.Tensor, num_mixtures: int, n_bits: int
) -> torch.Tensor:
    """``log P(k)`` per image under PixelCNN++'s discretised logistic mixture.

    Salimans et al. 2017, eq. 2-3. Per pixel

        P(k_pixel) = sum_m pi_m prod_c Logistic(k_c | mu_{m,c} + sum_{j<c} a_{m,c,j} x_j, s_{m,c}):

    the channels of one pixel depend linearly on the earlier channels' values.

    Args:
        k: integer images ``(N, C, H, W)``.
        params: network output ``(N, mixture_param_count(C, M), H, W)``.
        num_mixtures: ``M``, the logistics per pixel.
        n_bits: bits per pixel value (``k`` in ``[0, 2**n_bits)``).

    Returns:
        ``(N,)`` natural-log masses.
    """
    channels = k.shape[1]
    logits, means, log_scales, coeffs = _split_mixture_params(params, channels, num_mixtures)
    x = to_unit_range(k, n_bits, params.dtype)
    means = _conditioned_means(means, coeffs, x)
    per_channel = discretized_logistic_log_prob(
        k[:, None], means, log_scales, n_bits
    )  # (N, M, C, H, W)
    per_pixel = torch.logsumexp(per_channel.sum(2) + F.log_softmax(logits, 1), 1)  # (N, H, W)
    return per_pixel.flatten(1).sum(1)


@torch.no_grad()
def sample_discretized_mixture(
    params: torch.Tensor, channels: int, num_mixtures: int, n_bits: int
) -> torch.Tensor:
    """One integer pixel per location from the mixture, ``(N, C, H, W)`` int64.

    ``params`` is the network output ``(N, P, H, W)``.

    A continuous logistic sample rounded to its bin has exactly the discretised law, because
    the bins (edge bins open-ended) partition the real line. Later channels condition on the
    *quantised* value of earlier ones, as the likelihood does.
    """
    logits, means, log_scales, coeffs = _split_mixture_params(params, channels, num_mixtures)
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)))
    choice = (logits + gumbel).argmax(1, keepdim=True)  # (N, 1, H, W)

    def pick(t):  # (N, M, X, H, W) -> (N, X, H, W) at the chosen mixture
        return t.gather(1, choice[:, :, None].expand(-1, 1, t.shape[2], -1, -1)).squeeze(1)

    mu, log_s, a = pick(means), pick(log_scales), pick(coeffs) if coeffs.shape[2] else None
    values, pair = [], 0
    for c in range(channels):
        centre = mu[:, c] + sum(a[:, pair + j] * values[j] for j in range(c)) if c else mu[:, c]
        pair += c
        u = torch.rand_like(centre).clamp(1e-5, 1 - 1e-5)
        sample = centre + torch.exp(log_s[:, c]) * (torch.log(u) - torch.log1p(-u))
        values.append(to_unit_range(from_unit_range(sample, n_bits), n_bits, sample.dtype))
    return torch.stack([from_unit_range(v, n_bits) for v in values], 1)


def log_mean_exp(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(mean(exp(values)))`` along ``dim``, stably."""
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])

"""The analyses of Nalisnick et al. 2019, as pure functions of a density module and images.

Each analysis takes a :class:`~lit_rev.density.DensityModule` and integer images ``(N, C, H, W)``
and returns rows (and, for the figures, per-image values); nothing here reads configs or
files. The command ``python -m lit_rev.commands.analysis {decomposition,graying,second_order}``
runs them on a trained checkpoint and writes the reports.

* **Decomposition** (flows): ``log p(x) = log p(z) + log|det dz/dx|``; per set, the mean and
  histogram of each term, to see which one makes an OOD set look likely.
* **Graying**: bits/dim of the in-distribution test set as its pixels are shrunk toward the
  per-channel mean, ``mean + f (k - mean)``, for ``f`` in 1, 0.75, 0.5, 0.25, 0.
* **Second order** (Sec. 5 of the paper): for two sets ``p`` and ``q``, the Taylor expansion of
  ``log p`` around the mid point ``x0`` of their means predicts
  ``E_q[log p] - E_p[log p] ~= grad log p(x0) . (mu_q - mu_p) + 1/2 Tr(H(x0) (Sigma_q - Sigma_p))``
  with the full covariances and ``H(x0) = d^2 log p / dx^2``; :func:`second_order` computes it
  exactly with one Hessian-vector product per image (no D x D matrix) next to the measured gap;
  :func:`cv_glow_closed_form` gives the second-order term of a linearised constant-volume Glow
  and the paper's printed (diagonal) approximation.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F

from lit_rev.inference import evaluating, score_batches, slices
from lit_rev.options import check_choice

GRAYING_FACTORS = (1.0, 0.75, 0.5, 0.25, 0.0)

#: How a Hessian trace is computed: ``exact`` (one Hessian-vector product per dimension or
#: image) or ``hutchinson`` (an unbiased estimate from random Rademacher probes).
TraceMethod = Literal["exact", "hutchinson"]


# ----------------------------------------------------------------------------- helpers
def score_images(module, k: torch.Tensor, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """:meth:`DensityModule.scores` of integer images ``k`` in batches, concatenated (CPU)."""
    with evaluating(module):
        return score_batches(lambda b: module.scores(b.to(module.device)), slices(k, batch_size))


def images_of(dataset, limit: int | None = None) -> torch.Tensor:
    """All integer images ``(N, C, H, W)`` of a test set (int64), at most ``limit``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in range(n)]).long()


# ----------------------------------------------------------------------------- decomposition
def decomposition(
    module, sets: dict[str, torch.Tensor]
) -> tuple[list[dict], dict[str, dict[str, torch.Tensor]]]:
    """Per set, the means of ``log p(x)``, ``log p(z)`` and ``log|det|``.

    In nats per image and in bits/dim, to see which term makes an OOD set look likely. Needs a
    flow (a network with ``log_prob_parts``). Returns the rows and the per-image values.
    """
    if not hasattr(module.network, "log_prob_parts"):
        raise TypeError(
            f"{type(module.network).__name__} has no log_prob_parts: decomposition needs a flow"
        )
    rows, values = [], {}
    for name, k in sets.items():
        s = score_images(module, k)
        dims = k[0].numel()
        to_nats = -dims * math.log(2)
        log_pz = (s["prior_bpd"].double() - module.n_bits) * to_nats  # log p(z) of the continuous x
        log_det = s["logdet_bpd"].double() * to_nats
        values[name] = {"log_pz": log_pz, "log_det": log_det, "bpd": s["bpd"]}
        rows.append(
            {
                "set": name,
                "n": len(k),
                "bpd": s["bpd"].double().mean().item(),
                "log_px": (log_pz + log_det).mean().item(),
                "log_pz": log_pz.mean().item(),
                "log_det": log_det.mean().item(),
                "prior_bpd": s["prior_bpd"].double().mean().item(),
                "logdet_bpd": s["logdet_bpd"].double().mean().item(),
            }
        )
    return rows, values


def decomposition_figure(values: dict[str, dict[str, torch.Tensor]], in_name: str):
    """Two panels of overlaid histograms: ``log p(z)`` and ``log|det|`` per set.

    In the style of the paper's Fig. 2; ``in_name`` (the training set) goes in the title.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, label in (
        (axes[0], "log_pz", "log p(z)  (density term, nats)"),
        (axes[1], "log_det", "log|det dz/dx|  (volume term, nats)"),
    ):
        arrays = {n: v[key].numpy() for n, v in values.items()}
        lo, hi = np.percentile(np.concatenate(list(arrays.values())), [0.5, 99.5])
        edges = np.linspace(lo, hi + 1e-9 + (hi == lo), 51)
        for name, a in arrays.items():
            ax.hist(
                np.clip(a, lo, hi),
                bins=edges,
                density=True,
                histtype="stepfilled",
                alpha=0.4,
                label=name,
            )
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle(f"Decomposition of log p(x) (trained on {in_name})")
    return fig


# ----------------------------------------------------------------------------- graying
def gray(k: torch.Tensor, factor: float, mean: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Shrink integer images toward the per-channel ``mean``: ``mean + factor (k - mean)``.

    ``mean`` has shape ``(C, 1, 1)``; the result is rounded and clipped to ``[0, 2**n_bits)``.
    """
    return (mean + factor * (k.double() - mean)).round().clamp(0, 2**n_bits - 1).long()


def graying_curve(module, k: torch.Tensor, factors=GRAYING_FACTORS) -> list[dict]:
    """Mean bits/dim (and per-pixel standard deviation) of ``k`` grayed by every factor."""
    mean = k.double().mean(dim=(0, 2, 3)).view(-1, 1, 1)
    rows = []
    for f in factors:
        grayed = gray(k, f, mean, module.n_bits)
        s = score_images(module, grayed)
        row = {
            "factor": float(f),
            "pixel_std": grayed.double().std(0).mean().item(),
            "bpd": s["bpd"].double().mean().item(),
        }
        for part in ("prior_bpd", "logdet_bpd"):
            if part in s:
                row[part] = s[part].double().mean().item()
        rows.append(row)
    return rows


def graying_figure(rows: list[dict], in_name: str):
    """Bits/dim against the graying factor, from the rows of :func:`graying_curve`."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["factor"] for r in rows], [r["bpd"] for r in rows], "o-")
    ax.set_xlabel("graying factor (1 = original, 0 = constant at the mean)")
    ax.set_ylabel("bits/dim (lower = more likely)")
    ax.set_title(f"Graying the {in_name} test set")
    ax.invert_xaxis()
    return fig


# ----------------------------------------------------------------------------- second order
def hessian_vector_products(
    log_density, x0: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """``H(x0) v`` for every row ``v`` of ``directions (B, *x0.shape)``.

    ``H`` is the Hessian of ``log_density`` at ``x0``.

    All ``B`` products come from one double backward: ``x0`` is repeated ``B`` times as a
    batch, which is exact because the model scores each image of a batch independently.
    """
    x = x0.detach().unsqueeze(0).repeat(len(directions), *[1] * x0.dim()).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(log_density(x).sum(), x, create_graph=True)
        (hv,) = torch.autograd.grad((grad * directions).sum(), x)
    return hv


def hessian_quadratic_forms(
    log_density, x0: torch.Tensor, d: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """``d_n^T H(x0) d_n`` for every row ``d_n`` of ``d (N, *x0.shape)``.

    One Hessian-vector product each, ``chunk`` per double backward.

    Their mean over centred images is ``Tr(H(x0) Sigma)`` with ``Sigma`` the (1/N) covariance,
    without forming a D x D matrix.
    """
    forms = []
    for start in range(0, len(d), chunk):
        v = d[start : start + chunk].to(x0.device, x0.dtype)
        forms.append((hessian_vector_products(log_density, x0, v) * v).flatten(1).sum(1).cpu())
    return torch.cat(forms)


def log_density_gradient(log_density, x0: torch.Tensor) -> torch.Tensor:
    """``grad log p(x0)``, shape of ``x0``."""
    x = x0.detach().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(log_density(x).sum(), x)
    return grad[0]


def hessian_trace(
    log_density,
    x0: torch.Tensor,
    delta: torch.Tensor,
    method: TraceMethod = "exact",
    chunk: int = 64,
    probes: int = 64,
    seed: int = 0,
) -> float:
    """``Tr(H(x0) Delta)`` with ``H`` the Hessian of ``log_density`` at ``x0``.

    Args:
        log_density: a function of a batch ``(N, *x0.shape)``, one value per image.
        x0: the point of the Hessian.
        delta: the per-dimension diagonal of ``Delta`` (shape of ``x0``) or the full matrix
            ``(D, D)``.
        method: ``"exact"``: one Hessian-vector product per dimension
            (``Tr(H Delta) = sum_i (H Delta e_i)_i``); ``"hutchinson"``:
            ``E_v[(H v) . (Delta v)]`` over ``probes`` Rademacher ``v``.
        chunk: Hessian-vector products per double backward.
        probes: random probes of ``"hutchinson"``.
        seed: seed of the probes.
    """
    check_choice("method", method, TraceMethod)
    d = x0.numel()
    full = delta.shape != x0.shape and delta.numel() == d * d
    diag = None if full else delta.reshape(-1).to(x0.dtype)
    total = 0.0
    if method == "exact":
        for start in range(0, d, chunk):
            idx = torch.arange(start, min(start + chunk, d))
            if full:
                dirs = delta[:, idx].T.to(x0.dtype)
            else:
                dirs = torch.zeros(len(idx), d, dtype=x0.dtype)
                dirs[torch.arange(len(idx)), idx] = diag[idx]
            hv = hessian_vector_products(
                log_density, x0, dirs.view(-1, *x0.shape).to(x0.device)
            ).reshape(len(idx), d)
            total += hv[torch.arange(len(idx)), idx.to(hv.device)].sum().item()
        return total
    g = torch.Generator().manual_seed(seed)
    estimates = []
    for start in range(0, probes, chunk):
        b = min(chunk, probes - start)
        v = (torch.randint(0, 2, (b, d), generator=g) * 2 - 1).to(x0.dtype)
        hv = (
            hessian_vector_products(log_density, x0, v.view(-1, *x0.shape).to(x0.device))
            .reshape(b, d)
            .cpu()
        )
        dv = v @ delta.T.to(x0.dtype) if full else v * diag.cpu()
        estimates.append((hv * dv).sum(1))
    return torch.cat(estimates).mean().item()


def covariance_difference_trace(
    log_density,
    x0: torch.Tensor,
    d_p: torch.Tensor,
    d_q: torch.Tensor,
    method: TraceMethod = "exact",
    chunk: int = 64,
    probes: int = 64,
    seed: int = 0,
) -> float:
    """``Tr(H(x0) (Sigma_q - Sigma_p))`` from centred images ``d_p``, ``d_q`` ``(N, *x0.shape)``.

    ``Sigma = (1/N) sum_n d_n d_n^T`` is never formed. ``"exact"``: ``mean_q d^T H d -
    mean_p d^T H d``, one Hessian-vector product per image; ``"hutchinson"``:
    ``E_v[(H v) . ((Sigma_q - Sigma_p) v)]`` over ``probes`` Rademacher ``v``, with
    ``Sigma v = D^T (D v) / N`` from the data matrix ``D``.
    """
    check_choice("method", method, TraceMethod)
    if method == "exact":
        return (
            hessian_quadratic_forms(log_density, x0, d_q, chunk).mean()
            - hessian_quadratic_forms(log_density, x0, d_p, chunk).mean()
        ).item()
    dim = x0.numel()
    dp, dq = (d.reshape(len(d), dim).to(x0.dtype).cpu() for d in (d_p, d_q))
    g = torch.Generator().manual_seed(seed)
    estimates = []
    for start in range(0, probes, chunk):
        size = (min(chunk, probes - start), dim)
        v = (torch.randint(0, 2, size, generator=g) * 2 - 1).to(x0.dtype)
        hv = hessian_vector_products(log_density, x0, v.view(-1, *x0.shape).to(x0.device))
        hv = hv.reshape(len(v), dim).cpu()
        sigma_v = (v @ dq.T) @ dq / len(dq) - (v @ dp.T) @ dp / len(dp)
        estimates.append((hv * sigma_v).sum(1))
    return torch.cat(estimates).mean().item()


def squeezed_channel_sums(per_pixel: torch.Tensor) -> torch.Tensor:
    """Sum over positions of a ``(C, H, W)`` map after Glow's squeeze: ``(4C,)``.

    One value per squeezed channel, the channels the first 1x1 convolutions see.
    """
    c, h, w = per_pixel.shape
    squeezed = (
        per_pixel.view(c, h // 2, 2, w // 2, 2)
        .permute(0, 2, 4, 1, 3)
        .reshape(4 * c, h // 2, w // 2)
    )
    return squeezed.sum(dim=(1, 2))


def first_level_convs(glow) -> list[torch.Tensor]:
    """The 1x1-convolution weight matrices ``u_k`` (``(C', C')``) of the first level's steps.

    In the order of the steps, detached, in float64.
    """
    return [step.layers[1].weight_matrix().detach().double() for step in glow.levels[0]]


def linearised_latents(
    glow, x: torch.Tensor, affine: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(residual, log_std)`` of every latent group of the linearised CV-Glow, first level first.

    Linearised: every coupling is the identity (its network dropped), so each level is
    ActNorm and 1x1 convolutions only. A split's latents ``z`` are scored by the split prior,
    ``N(mean(h), exp(log_std(h))^2)`` with ``(mean, log_std)`` a 3x3 convolution of the kept half
    ``h``: the residual is ``z - mean(h)``; the last level's output has the top prior.
    ``affine=False`` drops every bias (ActNorm's, the split prior's, the top mean): the
    residuals are then the linear map ``L x`` alone, what a centred image ``d`` contributes.
    """
    h = x.double()
    groups = []
    for i, steps in enumerate(glow.levels):
        h, _ = glow.squeeze(h)
        for step in steps:
            actnorm, conv = step.layers[0], step.layers[1]
            h = (h + actnorm.bias.double()) if affine else h
            h = h * torch.exp(actnorm.log_scale.double())
            w = conv.weight_matrix().double()
            h = F.conv2d(h, w.view(*w.shape, 1, 1))
        if i < len(glow.splits):
            split = glow.splits[i]
            kept, z = h[:, : split.keep], h[:, split.keep :]
            prior = copy.deepcopy(split).double()  # mean and log_std are affine in the kept half
            mean, log_std = prior._params(kept)
            if not affine:
                mean = mean - prior._params(torch.zeros_like(kept))[0]
            groups.append((z - mean, log_std))
            h = kept
    top_mean = glow.top_mean.double() if affine else 0.0
    groups.append((h - top_mean, glow.top_log_std.double().expand_as(h)))
    return groups


@torch.no_grad()
def cv_glow_closed_form(
    glow,
    x_p: torch.Tensor,
    x_q: torch.Tensor,
    x0: torch.Tensor | None = None,
    sigma: float | None = None,
) -> dict[str, float]:
    """Closed forms of the second-order term ``1/2 Tr(H (Sigma_q - Sigma_p))`` of a CV-Glow.

    In nats per image.

    ``x_p``, ``x_q``: continuous images ``(N, C, H, W)`` of the two sets.

    * ``closed_form_linear``: the coupling networks dropped (:func:`linearised_latents`), each
      latent ``j`` is a linear function ``r_j = (L x)_j`` (minus its prior mean) with prior
      std ``s_j``, so ``H = -L^T diag(1/s^2) L`` and

          1/2 Tr(H (Sigma_q - Sigma_p)) = -1/2 sum_j (Var_q[r_j] - Var_p[r_j]) / s_j^2,

      the latent variances taken with the full covariance of the images (``Var[r_j] =
      (L Sigma L^T)_jj``, from the centred images). For one level this is
      ``-1/2 sum_{h,w} Tr(M^T Lambda_{h,w} M DeltaSigma_{h,w})``: ``M`` the first level's 1x1
      convolutions with ActNorm folded in, ``DeltaSigma_{h,w}`` the full covariance difference
      inside one squeezed 2x2 block, ``Lambda_{h,w}`` the top prior's precisions there. With more
      levels, half of the first level's latents are scored by the split prior, whose mean is a
      linear function of the kept half; its ``log_std(h)`` is taken at ``x0`` (default: the mid
      point of the two means). Exact when the coupling networks output zero and the split
      priors' log-std does not depend on ``h``.
    * ``closed_form_paper``: the form printed in Nalisnick et al. 2019, Sec. 5, an
      approximation: one level, per-pixel variances only (the diagonal of the covariances), one
      ``N(0, sigma^2)`` prior for every latent (``sigma``: default, the top prior's mean std),
      ActNorm left out:
      ``-1/(2 sigma^2) sum_c (prod_k sum_j u_{k,c,j})^2 sum_{h,w} (var_q - var_p)``,
      ``c`` the squeezed channels and ``u_k`` the 1x1 convolutions.
    """
    device = glow.top_mean.device
    x_p, x_q = x_p.to(device, torch.float64), x_q.to(device, torch.float64)
    mu_p, mu_q = x_p.mean(0), x_q.mean(0)
    x0 = 0.5 * (mu_p + mu_q) if x0 is None else x0.to(device, torch.float64)
    linear = 0.0
    at_x0 = linearised_latents(glow, x0[None])
    lin_q = linearised_latents(glow, x_q - mu_q, affine=False)
    lin_p = linearised_latents(glow, x_p - mu_p, affine=False)
    for (_, log_std), (r_q, _), (r_p, _) in zip(at_x0, lin_q, lin_p, strict=True):
        variance_change = r_q.pow(2).mean(0) - r_p.pow(2).mean(0)
        linear += (-0.5 * variance_change * torch.exp(-2 * log_std[0])).sum().item()

    if sigma is None:
        sigma = float(torch.exp(glow.top_log_std.detach().double()).mean())
    delta = squeezed_channel_sums((x_q.var(0, unbiased=False) - x_p.var(0, unbiased=False)).cpu())
    paper_factor = torch.ones(len(delta), dtype=torch.float64)
    for u in first_level_convs(glow):
        paper_factor = paper_factor * u.cpu().sum(1)
    paper = -(paper_factor**2) @ delta / (2 * sigma**2)
    return {"closed_form_linear": linear, "closed_form_paper": float(paper), "sigma": sigma}


def continuous(module, k: torch.Tensor) -> torch.Tensor:
    """The flow's continuous input of integer images (cell centres)."""
    return module.model_input(k, noise=False)


def second_order(
    module,
    k_p: torch.Tensor,
    k_q: torch.Tensor,
    method: TraceMethod = "exact",
    probes: int = 64,
    dtype=torch.float64,
    curvature_points: int = 0,
    chunk: int = 64,
    diagonal_only: bool = True,
) -> dict:
    """Taylor prediction of ``E_q[log p(x)] - E_p[log p(x)]`` around ``x0``, and the measured gap.

    In nats per image.

    ``x0`` is the mid point of the two sets' means ``mu_p``, ``mu_q``; ``Sigma_p``, ``Sigma_q``
    their full (1/N) covariances. Expanding ``log p`` to second order around ``x0``,

        predicted = grad log p(x0) . (mu_q - mu_p) + 1/2 Tr(H(x0) (Sigma_q - Sigma_p))
                    ^ predicted_first_order          ^ predicted_second_order

    (the terms in ``(mu - x0)^T H (mu - x0)`` cancel because ``x0`` is the mid point). It is
    exact when ``log p`` is quadratic; the paper's Sec. 5 keeps the second term only (equal
    means). The trace is ``mean_q d^T H d - mean_p d^T H d`` over the centred images ``d``,
    one Hessian-vector product each (``method="hutchinson"``: ``probes`` random probes).

    Also returned: ``measured_gap``; ``taylor_error_p``/``_q``, the mean of ``log p`` minus its
    quadratic model over each set (``measured_gap - predicted = taylor_error_q - taylor_error_p``);
    ``predicted_diagonal_only`` (``diagonal_only=True``, one product per input dimension):
    ``1/2 sum_i H_ii (var_q,i - var_p,i)``, what the per-pixel variances alone give;
    ``predicted_avg_curvature`` (``curvature_points > 0``): the second-order term with ``H``
    averaged over that many images of ``p`` (how local the expansion is); and for a CV-Glow
    :func:`cv_glow_closed_form`.
    """
    check_choice("method", method, TraceMethod)
    network = module.network
    if module.likelihood != "density":
        raise TypeError("the second-order analysis needs a flow (log-density of continuous x)")
    x_p, x_q = continuous(module, k_p).double(), continuous(module, k_q).double()
    mu_p, mu_q = x_p.mean(0), x_q.mean(0)
    x0 = 0.5 * (mu_p + mu_q)
    d_p, d_q = x_p - mu_p, x_q - mu_q
    original = next(network.parameters()).dtype
    with evaluating(network, grad=True):
        network.to(dtype)
        device = next(network.parameters()).device
        try:
            log_density = network.log_prob
            x0_ = x0.to(device, dtype)
            first = (
                (log_density_gradient(log_density, x0_).double().cpu() * (mu_q - mu_p)).sum().item()
            )
            if (
                method == "exact"
            ):  # Tr(H Sigma) of each set: the trace and each set's quadratic model
                tr_q = hessian_quadratic_forms(log_density, x0_, d_q.to(dtype), chunk).mean().item()
                tr_p = hessian_quadratic_forms(log_density, x0_, d_p.to(dtype), chunk).mean().item()
                trace = tr_q - tr_p
            else:
                trace = covariance_difference_trace(
                    log_density, x0_, d_p.to(dtype), d_q.to(dtype), method, chunk, probes
                )
                tr_q = tr_p = float("nan")
            # the quadratic model's curvature at the means, (mu - x0)^T H (mu - x0): equal for
            # p and q
            half_diff = (0.5 * (mu_q - mu_p))[None].to(device, dtype)
            mean_term = hessian_quadratic_forms(log_density, x0_, half_diff).item()

            def log_p(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    values = [network.log_prob(b.to(device, dtype)) for b in x.split(chunk)]
                return torch.cat(values).double().cpu()

            log_p_q, log_p_p = log_p(x_q), log_p(x_p)
            log_p_x0 = log_p(x0[None]).item()
            mean_gap = (log_p(mu_q[None]) - log_p(mu_p[None])).item()
            measured = (log_p_q.mean() - log_p_p.mean()).item()
            # the quadratic model of log p around x0, averaged over each set
            model_q = log_p_x0 + 0.5 * first + 0.5 * (tr_q + mean_term)
            model_p = log_p_x0 - 0.5 * first + 0.5 * (tr_p + mean_term)
            var_diff = d_q.pow(2).mean(0) - d_p.pow(2).mean(0)
            result = {
                "predicted": first + 0.5 * trace,
                "predicted_first_order": first,
                "predicted_second_order": 0.5 * trace,
                "measured_gap": measured,
                "taylor_error_p": log_p_p.mean().item() - model_p,
                "taylor_error_q": log_p_q.mean().item() - model_q,
                "log_p_mean_q_minus_mean_p": mean_gap,
                "method": method,
                "mean_abs_difference_of_means": (mu_q - mu_p).abs().mean().item(),
                "sum_variance_difference": var_diff.sum().item(),
            }
            if diagonal_only:
                diagonal = var_diff.to(device, dtype)
                result["predicted_diagonal_only"] = 0.5 * hessian_trace(
                    log_density, x0_, diagonal, method, chunk, probes
                )
            if curvature_points > 0:
                points = x_p[torch.linspace(0, len(x_p) - 1, curvature_points).long()].to(
                    device, dtype
                )
                traces = [
                    covariance_difference_trace(
                        log_density, x, d_p.to(dtype), d_q.to(dtype), method, chunk, probes
                    )
                    for x in points
                ]
                result["predicted_avg_curvature"] = 0.5 * sum(traces) / len(traces)
            if getattr(network, "coupling", None) == "additive":
                result.update(cv_glow_closed_form(network, x_p, x_q, x0))
        finally:
            network.to(original)
    return result


# ----------------------------------------------------------------------------- tables
SECOND_ORDER_QUANTITIES = (
    ("measured_gap", "measured: E_q[log p] - E_p[log p]"),
    ("predicted", "Taylor prediction around x0 (first + second order)"),
    ("predicted_first_order", "first order: grad log p(x0) . (mu_q - mu_p)"),
    ("predicted_second_order", "second order: 1/2 Tr(H(x0) (Sigma_q - Sigma_p)), full covariances"),
    ("taylor_error_p", "E_p[log p - its quadratic model]"),
    ("taylor_error_q", "E_q[log p - its quadratic model]"),
    ("predicted_diagonal_only", "1/2 sum_i H_ii (var_q,i - var_p,i): per-pixel variances only"),
    ("predicted_avg_curvature", "second order with H averaged over images of p"),
    ("closed_form_linear", "second order of the linearised CV-Glow (couplings dropped)"),
    ("closed_form_paper", "the paper's closed form (diagonal approximation)"),
)


def second_order_rows(result: dict, dims: int) -> list[dict]:
    """One row per quantity of :func:`second_order`, in nats per image and in bits/dim.

    Bits/dim are ``-nats / (D ln 2)``: a gain in log p is a drop in bits/dim.
    """
    to_bpd = -1 / (dims * math.log(2))
    return [
        {"quantity": key, "nats": result[key], "bpd": result[key] * to_bpd, "what": what}
        for key, what in SECOND_ORDER_QUANTITIES
        if key in result
    ]

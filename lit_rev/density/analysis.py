"""The analyses of Nalisnick et al. 2019, as functions and as commands.

    python -m lit_rev.density.analysis decomposition --config <yaml> --ckpt_path <ckpt>
    python -m lit_rev.density.analysis graying       --config <yaml> --ckpt_path <ckpt>
    python -m lit_rev.density.analysis second_order  --config <yaml> --ckpt_path <ckpt> [--ood_set NAME]

Each command builds the model and data from the same YAML as ``fit``/``test`` (any
``--section.key=value`` override after ``--`` is passed through), loads the checkpoint,
prints a table and writes ``<name>.{json,csv,md}`` and a figure to ``--out_dir`` (default:
the checkpoint's run directory).

* **Decomposition** (flows): ``log p(x) = log p(z) + log|det dz/dx|``; per set, the mean and
  histogram of each term, to see which one makes an OOD set look likely.
* **Graying**: bits/dim of the in-distribution test set as its pixels are shrunk toward the
  per-channel mean, ``mean + f (k - mean)``, for ``f`` in 1, 0.75, 0.5, 0.25, 0.
* **Second order** (Sec. 5 of the paper): for two sets ``p`` and ``q`` with about the same mean
  ``x0``, ``E_q[log p(x)] - E_p[log p(x)] ~= 1/2 Tr(H(x0) (Sigma_q - Sigma_p))`` with
  ``H(x0) = d^2 log p / dx^2`` at ``x0``. :func:`hessian_trace` computes the trace exactly with
  Hessian-vector products (one per basis direction, batched) or by Hutchinson's estimator;
  :func:`cv_glow_closed_form` is the paper's closed form for a constant-volume Glow from the
  1x1-convolution weights and per-channel variances.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from lit_rev.report import format_table, save_figure, write_report

GRAYING_FACTORS = (1.0, 0.75, 0.5, 0.25, 0.0)


# ----------------------------------------------------------------------------- helpers
@torch.no_grad()
def score_images(module, k: torch.Tensor, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """:meth:`DensityModule.scores` of integer images ``k`` in batches, concatenated (CPU)."""
    was_training = module.training
    module.eval()
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(k), batch_size):
        for key, value in module.scores(k[start : start + batch_size].to(module.device)).items():
            out.setdefault(key, []).append(value.cpu())
    module.train(was_training)
    return {key: torch.cat(v) for key, v in out.items()}


def images_of(dataset, limit: int | None = None) -> torch.Tensor:
    """All integer images ``(N, C, H, W)`` of a test set (int64), at most ``limit``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([torch.as_tensor(dataset[i][0]) for i in range(n)]).long()


# ----------------------------------------------------------------------------- decomposition
def decomposition(module, sets: dict[str, torch.Tensor]) -> tuple[list[dict], dict[str, dict[str, torch.Tensor]]]:
    """Per set, the mean of ``log p(x)``, of ``log p(z)`` and of ``log|det|`` (nats per image and bits/dim).

    Needs a flow (a network with ``log_prob_parts``). Returns the rows and the per-image values.
    """
    if not hasattr(module.network, "log_prob_parts"):
        raise TypeError(f"{type(module.network).__name__} has no log_prob_parts: decomposition needs a flow")
    rows, values = [], {}
    for name, k in sets.items():
        s = score_images(module, k)
        dims = k[0].numel()
        to_nats = -dims * math.log(2)
        log_pz = (s["prior_bpd"].double() - module.n_bits) * to_nats  # log p(z) of the continuous x
        log_det = s["logdet_bpd"].double() * to_nats
        values[name] = {"log_pz": log_pz, "log_det": log_det, "bpd": s["bpd"]}
        rows.append({
            "set": name, "n": len(k), "bpd": s["bpd"].double().mean().item(),
            "log_px": (log_pz + log_det).mean().item(), "log_pz": log_pz.mean().item(), "log_det": log_det.mean().item(),
            "prior_bpd": s["prior_bpd"].double().mean().item(), "logdet_bpd": s["logdet_bpd"].double().mean().item(),
        })
    return rows, values


def decomposition_figure(values: dict[str, dict[str, torch.Tensor]], in_name: str):
    """Two panels of overlaid histograms: ``log p(z)`` and ``log|det|`` per set (the paper's Fig. 2 style)."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, label in ((axes[0], "log_pz", "log p(z)  (density term, nats)"), (axes[1], "log_det", "log|det dz/dx|  (volume term, nats)")):
        arrays = {n: v[key].numpy() for n, v in values.items()}
        lo, hi = np.percentile(np.concatenate(list(arrays.values())), [0.5, 99.5])
        edges = np.linspace(lo, hi + 1e-9 + (hi == lo), 51)
        for name, a in arrays.items():
            ax.hist(np.clip(a, lo, hi), bins=edges, density=True, histtype="stepfilled", alpha=0.4, label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle(f"Decomposition of log p(x) (trained on {in_name})")
    return fig


# ----------------------------------------------------------------------------- graying
def gray(k: torch.Tensor, factor: float, mean: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Shrink integer images toward the per-channel ``mean`` (shape ``(C, 1, 1)``): ``mean + factor (k - mean)``."""
    return (mean + factor * (k.double() - mean)).round().clamp(0, 2**n_bits - 1).long()


def graying_curve(module, k: torch.Tensor, factors=GRAYING_FACTORS) -> list[dict]:
    """Mean bits/dim (and per-pixel standard deviation) of ``k`` grayed by every factor."""
    mean = k.double().mean(dim=(0, 2, 3)).view(-1, 1, 1)
    rows = []
    for f in factors:
        grayed = gray(k, f, mean, module.n_bits)
        s = score_images(module, grayed)
        row = {"factor": float(f), "pixel_std": grayed.double().std(0).mean().item(), "bpd": s["bpd"].double().mean().item()}
        for part in ("prior_bpd", "logdet_bpd"):
            if part in s:
                row[part] = s[part].double().mean().item()
        rows.append(row)
    return rows


def graying_figure(rows: list[dict], in_name: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["factor"] for r in rows], [r["bpd"] for r in rows], "o-")
    ax.set_xlabel("graying factor (1 = original, 0 = constant at the mean)")
    ax.set_ylabel("bits/dim (lower = more likely)")
    ax.set_title(f"Graying the {in_name} test set")
    ax.invert_xaxis()
    return fig


# ----------------------------------------------------------------------------- second order
def hessian_vector_products(log_density, x0: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``H(x0) v`` for every row ``v`` of ``directions (B, *x0.shape)``, ``H`` the Hessian of ``log_density`` at ``x0``.

    All ``B`` products come from one double backward: ``x0`` is repeated ``B`` times as a
    batch, which is exact because the model scores each image of a batch independently.
    """
    x = x0.detach().unsqueeze(0).repeat(len(directions), *[1] * x0.dim()).requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(log_density(x).sum(), x, create_graph=True)
        (hv,) = torch.autograd.grad((grad * directions).sum(), x)
    return hv


def hessian_trace(
    log_density, x0: torch.Tensor, delta: torch.Tensor, method: str = "exact", chunk: int = 64,
    probes: int = 64, seed: int = 0,
) -> float:
    """``Tr(H(x0) Delta)`` with ``H`` the Hessian of ``log_density`` (a function of a batch ``(N, *x0.shape)``).

    ``delta``: the per-dimension diagonal of ``Delta`` (shape of ``x0``) or the full matrix ``(D, D)``.
    ``method="exact"``: one Hessian-vector product per dimension (``Tr(H Delta) = sum_i (H Delta e_i)_i``),
    ``chunk`` per pass; ``"hutchinson"``: ``E_v[(H v) . (Delta v)]`` over ``probes`` Rademacher ``v``.
    """
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
            hv = hessian_vector_products(log_density, x0, dirs.view(-1, *x0.shape).to(x0.device)).reshape(len(idx), d)
            total += hv[torch.arange(len(idx)), idx.to(hv.device)].sum().item()
        return total
    if method == "hutchinson":
        g = torch.Generator().manual_seed(seed)
        estimates = []
        for start in range(0, probes, chunk):
            b = min(chunk, probes - start)
            v = (torch.randint(0, 2, (b, d), generator=g) * 2 - 1).to(x0.dtype)
            hv = hessian_vector_products(log_density, x0, v.view(-1, *x0.shape).to(x0.device)).reshape(b, d).cpu()
            dv = v @ delta.T.to(x0.dtype) if full else v * diag.cpu()
            estimates.append((hv * dv).sum(1))
        return torch.cat(estimates).mean().item()
    raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")


def squeezed_channel_sums(per_pixel: torch.Tensor) -> torch.Tensor:
    """Sum over positions of a ``(C, H, W)`` map after Glow's squeeze: ``(4C,)``, the channels the first 1x1 convolutions see."""
    c, h, w = per_pixel.shape
    squeezed = per_pixel.view(c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3).reshape(4 * c, h // 2, w // 2)
    return squeezed.sum(dim=(1, 2))


def first_level_convs(glow) -> list[torch.Tensor]:
    """The 1x1-convolution weight matrices ``u_k`` (``(C', C')``, in order) of the first level's steps."""
    return [step.layers[1].weight_matrix().detach().double() for step in glow.levels[0]]


def cv_glow_closed_form(glow, var_p: torch.Tensor, var_q: torch.Tensor, sigma: float | None = None) -> dict[str, float]:
    """The paper's closed form of ``E_q[log p] - E_p[log p]`` for a constant-volume Glow (nats per image).

    With the coupling networks' curvature neglected, the first level is linear,
    ``z = M squeeze(x)`` with ``M = u_K ... u_1`` (ActNorm scales folded in), and a
    ``N(0, sigma^2)`` latent gives ``H = -M^T M / sigma^2`` per position, so

        linear:  -1/(2 sigma^2) sum_c (M^T M)_{cc} sum_{h,w} (sigma^2_{q,h,w,c} - sigma^2_{p,h,w,c})
        paper:   -1/(2 sigma^2) sum_c (prod_k sum_j u_{k,c,j})^2 sum_{h,w} (sigma^2_q - sigma^2_p)

    (the second as printed in Nalisnick et al. 2019, Sec. 5; ``c`` runs over the squeezed
    channels). Both squared factors are ``>= 0``: a set with lower variance gets the higher
    likelihood. ``var_p``, ``var_q``: per-pixel variances ``(C, H, W)`` of the continuous input;
    ``sigma`` defaults to the top prior's mean standard deviation.
    """
    if sigma is None:
        sigma = float(torch.exp(glow.top_log_std.detach().double()).mean())
    delta = squeezed_channel_sums((var_q - var_p).double().cpu())
    m = torch.eye(len(delta), dtype=torch.float64)
    paper_factor = torch.ones(len(delta), dtype=torch.float64)
    for step, u in zip(glow.levels[0], first_level_convs(glow)):
        actnorm = torch.diag(torch.exp(step.layers[0].log_scale.detach().double().flatten()))
        m = u.cpu() @ actnorm @ m
        paper_factor = paper_factor * u.cpu().sum(1)
    linear = -(m.T @ m).diagonal() @ delta / (2 * sigma**2)
    paper = -(paper_factor**2) @ delta / (2 * sigma**2)
    return {"closed_form_linear": float(linear), "closed_form_paper": float(paper), "sigma": sigma}


def continuous(module, k: torch.Tensor) -> torch.Tensor:
    """The flow's continuous input of integer images (cell centres)."""
    return module.model_input(k, noise=False)


def second_order(
    module, k_p: torch.Tensor, k_q: torch.Tensor, method: str = "exact", probes: int = 64, dtype=torch.float64,
    curvature_points: int = 0,
) -> dict:
    """Predicted (second-order, closed form) and measured ``E_q[log p(x)] - E_p[log p(x)]`` in nats per image.

    ``x0`` is the average of the two sets' means; the covariances are diagonal (per-pixel
    variances), the paper's setting. ``curvature_points > 0`` adds
    ``predicted_avg_curvature``: the same trace with the Hessian averaged over that many
    images of ``p`` instead of taken at ``x0`` (a check of how local the expansion is).
    """
    network = module.network
    if module.likelihood != "density":
        raise TypeError("the second-order analysis needs a flow (log-density of continuous x)")
    x_p, x_q = continuous(module, k_p).double(), continuous(module, k_q).double()
    x0 = 0.5 * (x_p.mean(0) + x_q.mean(0))
    var_p, var_q = x_p.var(0), x_q.var(0)
    original = next(network.parameters()).dtype
    was_training = network.training
    network.eval().to(dtype)
    try:
        log_density = lambda x: network.log_prob(x)  # noqa: E731
        trace = hessian_trace(log_density, x0.to(dtype), (var_q - var_p).to(dtype), method=method, probes=probes)
        with torch.no_grad():
            measured = (network.log_prob(x_q.to(dtype)).mean() - network.log_prob(x_p.to(dtype)).mean()).item()
            mean_gap = (network.log_prob(x_q.mean(0, keepdim=True).to(dtype)) - network.log_prob(x_p.mean(0, keepdim=True).to(dtype))).item()
        result = {"predicted_second_order": 0.5 * trace, "measured_gap": measured, "log_p_mean_q_minus_mean_p": mean_gap,
                  "method": method, "mean_abs_difference_of_means": (x_q.mean(0) - x_p.mean(0)).abs().mean().item(),
                  "sum_variance_difference": (var_q - var_p).sum().item()}
        if curvature_points > 0:
            points = x_p[torch.linspace(0, len(x_p) - 1, curvature_points).long()].to(dtype)
            traces = [hessian_trace(log_density, x, (var_q - var_p).to(dtype), method=method, probes=probes) for x in points]
            result["predicted_avg_curvature"] = 0.5 * sum(traces) / len(traces)
        if getattr(network, "coupling", None) == "additive":
            result.update(cv_glow_closed_form(network, var_p, var_q))
    finally:
        network.to(original).train(was_training)
    return result


# ----------------------------------------------------------------------------- command line
def load(config: str, ckpt_path: str | None, overrides: list[str] = ()):
    """Model and DataModule from a ``fit`` YAML (plus overrides), with the checkpoint's weights."""
    from lit_rev.cli import LitRevCLI

    cli = LitRevCLI(args=["--config", config, "--trainer.logger=false", *overrides], run=False)
    module, dm = cli.model, cli.datamodule
    if ckpt_path:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state, strict=False)
    if module.hparams.get("n_bits") is None:
        module.n_bits = getattr(dm, "n_bits", 8)
    module.eval()
    return module, dm


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m lit_rev.density.analysis", description=__doc__.split("\n\n")[0])
    parser.add_argument("analysis", choices=["decomposition", "graying", "second_order"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--ckpt_path", default=None)
    parser.add_argument("--out_dir", default=None, help="default: the checkpoint's run directory (else .)")
    parser.add_argument("--max_images", type=int, default=1000, help="images per set")
    parser.add_argument("--ood_set", default=None, help="second_order: the set q (default: a grayed set if any, else the first OOD set)")
    parser.add_argument("--method", default="exact", choices=["exact", "hutchinson"])
    parser.add_argument("--curvature_points", type=int, default=4, help="second_order: also average the Hessian over this many in-distribution images")
    parser.add_argument("--torch_threads", type=int, default=None)
    args, overrides = parser.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    module, dm = load(args.config, args.ckpt_path, overrides)
    dm.setup("test")
    sets = {name: images_of(ds, args.max_images) for name, ds in zip(dm.test_names, dm.test_sets)}
    in_name = dm.test_names[0]
    out_dir = Path(args.out_dir) if args.out_dir else (Path(args.ckpt_path).resolve().parents[1] if args.ckpt_path else Path("."))
    meta = {"config": args.config, "ckpt_path": args.ckpt_path, "network": type(module.network).__name__,
            "torch_threads": torch.get_num_threads(), "max_images": args.max_images}
    if args.analysis == "decomposition":
        rows, values = decomposition(module, sets)
        save_figure(decomposition_figure(values, in_name), out_dir, "decomposition")
    elif args.analysis == "graying":
        rows = graying_curve(module, sets[in_name])
        save_figure(graying_figure(rows, in_name), out_dir, "graying")
    else:
        q = args.ood_set or next((n for n in dm.test_names[1:] if "gray" in n), dm.test_names[1])
        result = second_order(module, sets[in_name], sets[q], method=args.method, curvature_points=args.curvature_points)
        dims = sets[in_name][0].numel()
        rows = [{"p": in_name, "q": q, **result}]
        for key in ("predicted_second_order", "predicted_avg_curvature", "measured_gap", "closed_form_linear", "closed_form_paper"):
            if key in result:
                rows[0][f"{key}_bpd"] = -result[key] / (dims * math.log(2))
    write_report(rows, out_dir, args.analysis, meta)
    print(f"\n{args.analysis} ({type(module.network).__name__}, trained on {in_name})\n{format_table(rows)}\nReport: {out_dir / (args.analysis + '.md')}")
    return rows


if __name__ == "__main__":
    main()

"""The paper's analyses: second-order formula against brute force, closed form, graying, decomposition."""

import math

import pytest
import torch

from lit_rev.density import DensityModule, Glow
from lit_rev.density.analysis import (
    cv_glow_closed_form,
    decomposition,
    gray,
    graying_curve,
    hessian_trace,
    main,
    squeezed_channel_sums,
)

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def tiny_cv_glow(levels=1, steps=2, randomise_couplings=True, seed=0):
    torch.manual_seed(seed)
    glow = Glow(in_channels=1, image_size=4, levels=levels, steps=steps, hidden_channels=4, coupling="additive")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in glow.named_parameters():
            is_coupling = ".net." in name or "prior" in name
            if randomise_couplings or not is_coupling:
                if name not in ("top_mean", "top_log_std"):
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
    return glow.double().eval()


def brute_force_hessian(f, x0, h=1e-3):
    """Central second differences of f alone (no autograd): H_ij ~ [f(++) - f(+-) - f(-+) + f(--)] / 4h^2."""
    d = x0.numel()
    eye = torch.eye(d, dtype=x0.dtype) * h
    points = []
    for i in range(d):
        for j in range(d):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                points.append(x0.flatten() + si * eye[i] + sj * eye[j])
    with torch.no_grad():
        values = f(torch.stack(points).view(-1, *x0.shape)).view(d, d, 4)
    return (values[..., 0] - values[..., 1] - values[..., 2] + values[..., 3]) / (4 * h * h)


def test_second_order_trace_matches_brute_force_expansion_on_tiny_cv_glow():
    glow = tiny_cv_glow(levels=2, steps=2)
    x0 = 0.2 * torch.randn(1, 4, 4, dtype=torch.float64)
    hess = brute_force_hessian(glow.log_prob, x0)
    g = torch.Generator().manual_seed(1)
    var_diff = torch.rand(1, 4, 4, generator=g, dtype=torch.float64) - 0.7  # sigma_q^2 - sigma_p^2 per pixel
    expected = 0.5 * (hess.diagonal() * var_diff.flatten()).sum().item()
    assert 0.5 * hessian_trace(glow.log_prob, x0, var_diff, chunk=5) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # a full covariance difference: Tr(H Delta)
    a = torch.randn(16, 16, generator=g, dtype=torch.float64)
    delta = 0.1 * (a + a.T)
    assert hessian_trace(glow.log_prob, x0, delta) == pytest.approx((hess * delta).sum().item(), rel=1e-5, abs=1e-6)
    # Hutchinson's estimate agrees within its noise
    estimate = hessian_trace(glow.log_prob, x0, var_diff, method="hutchinson", probes=4000, chunk=500)
    assert 0.5 * estimate == pytest.approx(expected, rel=0.15, abs=0.05 * abs(hess.diagonal()).sum().item())
    # and the expansion predicts the change of log p for a small Gaussian perturbation
    torch.manual_seed(2)
    std = 1e-2
    noise = std * torch.randn(10000, 1, 4, 4, dtype=torch.float64)
    samples = torch.cat([x0 + noise, x0 - noise])  # antithetic: the first-order term cancels exactly
    with torch.no_grad():
        measured = (glow.log_prob(samples).mean() - glow.log_prob(x0[None])).item()
    predicted = 0.5 * std**2 * hess.diagonal().sum().item()
    assert measured == pytest.approx(predicted, rel=0.1)


def test_closed_form_is_exact_for_a_linear_cv_glow():
    """Couplings at their identity initialisation and a N(0, sigma^2) top prior make one level of
    CV-Glow linear, z = M squeeze(x): then 1/2 Tr(H Delta) equals the closed form exactly."""
    glow = tiny_cv_glow(levels=1, steps=3, randomise_couplings=False)
    sigma = 0.7
    with torch.no_grad():
        glow.top_mean.zero_()
        glow.top_log_std.fill_(math.log(sigma))
    g = torch.Generator().manual_seed(3)
    var_p = torch.rand(1, 4, 4, generator=g, dtype=torch.float64)
    var_q = 0.5 * var_p
    x0 = torch.randn(1, 4, 4, dtype=torch.float64)
    predicted = 0.5 * hessian_trace(glow.log_prob, x0, var_q - var_p)
    closed = cv_glow_closed_form(glow, var_p, var_q)
    assert closed["sigma"] == pytest.approx(sigma)
    assert closed["closed_form_linear"] == pytest.approx(predicted, rel=1e-9)
    assert closed["closed_form_linear"] > 0  # the lower-variance set gets the higher likelihood


def test_paper_closed_form_equals_linear_form_for_diagonal_convolutions():
    glow = Glow(in_channels=1, image_size=4, levels=1, steps=2, hidden_channels=4, coupling="additive", lu=False).double().eval()
    with torch.no_grad():
        for step in glow.levels[0]:
            step.layers[1].weight.copy_(torch.diag(torch.tensor([0.5, -1.5, 2.0, 1.0], dtype=torch.float64)))
    var_p = torch.rand(1, 4, 4, dtype=torch.float64)
    closed = cv_glow_closed_form(glow, var_p, 0.3 * var_p, sigma=1.0)
    assert closed["closed_form_paper"] == pytest.approx(closed["closed_form_linear"], rel=1e-12)


def test_squeezed_channel_sums():
    per_pixel = torch.arange(16.0).view(1, 4, 4)
    sums = squeezed_channel_sums(per_pixel)
    assert sums.tolist() == [0 + 2 + 8 + 10, 1 + 3 + 9 + 11, 4 + 6 + 12 + 14, 5 + 7 + 13 + 15]


def test_graying_and_decomposition():
    k = torch.randint(0, 256, (6, 1, 8, 8))
    mean = k.double().mean(dim=(0, 2, 3)).view(-1, 1, 1)
    assert torch.equal(gray(k, 1.0, mean, 8), k)
    assert (gray(k, 0.0, mean, 8) == mean.round().long()).all()
    module = DensityModule(Glow(in_channels=1, image_size=8, levels=2, steps=1, hidden_channels=8), n_bits=8)
    rows = graying_curve(module, k)
    assert [r["factor"] for r in rows] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert rows[0]["pixel_std"] > rows[2]["pixel_std"] > rows[-1]["pixel_std"] == 0.0
    table, values = decomposition(module, {"a": k, "b": gray(k, 0.5, mean, 8)})
    for row in table:
        assert row["log_px"] == pytest.approx(row["log_pz"] + row["log_det"])
        assert row["bpd"] == pytest.approx(-row["log_px"] / (64 * math.log(2)) + 8, abs=1e-4)


@pytest.mark.slow
def test_analysis_commands_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "density" / "quick_cvglow_naturalpatches.yaml")
    small = ["--model.init_args.network.init_args.steps=1", "--model.init_args.network.init_args.hidden_channels=8",
             "--data.init_args.max_test=16"]
    for analysis in ("decomposition", "graying", "second_order"):
        rows = main([analysis, "--config", config, "--out_dir", str(tmp_path), "--max_images", "16", "--curvature_points", "1", *small])
        assert (tmp_path / f"{analysis}.md").exists() and rows
    assert {"predicted_second_order", "predicted_avg_curvature", "measured_gap", "closed_form_linear", "closed_form_paper"} <= set(rows[0])
    assert (tmp_path / "graying.png").exists() and (tmp_path / "decomposition.png").exists()

"""The paper's analyses: second-order formula against brute force, closed form, graying,
decomposition; safe and strict checkpoint loading."""

import math
from pathlib import Path

import pytest
import torch

from lit_rev.commands.analysis import load, main
from lit_rev.density import DensityModule, Glow, LikelihoodRatio
from lit_rev.density.analysis import (
    covariance_difference_trace,
    cv_glow_closed_form,
    decomposition,
    gray,
    graying_curve,
    hessian_trace,
    second_order,
    squeezed_channel_sums,
)
from tests.test_cli import tiny_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def tiny_cv_glow(levels=1, steps=2, randomise_couplings=True, seed=0):
    torch.manual_seed(seed)
    glow = Glow(
        in_channels=1,
        image_size=4,
        levels=levels,
        steps=steps,
        hidden_channels=4,
        coupling="additive",
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in glow.named_parameters():
            is_coupling = ".net." in name or "prior" in name
            is_top = name in ("top_mean", "top_log_std")
            if (randomise_couplings or not is_coupling) and not is_top:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return glow.double().eval()


def brute_force_hessian(f, x0, h=1e-3):
    """Central second differences of f alone (no autograd):
    H_ij ~ [f(++) - f(+-) - f(-+) + f(--)] / 4h^2."""
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
    var_diff = (
        torch.rand(1, 4, 4, generator=g, dtype=torch.float64) - 0.7
    )  # sigma_q^2 - sigma_p^2 per pixel
    expected = 0.5 * (hess.diagonal() * var_diff.flatten()).sum().item()
    assert 0.5 * hessian_trace(glow.log_prob, x0, var_diff, chunk=5) == pytest.approx(
        expected, rel=1e-5, abs=1e-7
    )
    # a full covariance difference: Tr(H Delta)
    a = torch.randn(16, 16, generator=g, dtype=torch.float64)
    delta = 0.1 * (a + a.T)
    assert hessian_trace(glow.log_prob, x0, delta) == pytest.approx(
        (hess * delta).sum().item(), rel=1e-5, abs=1e-6
    )
    # Hutchinson's estimate agrees within its noise
    estimate = hessian_trace(
        glow.log_prob, x0, var_diff, method="hutchinson", probes=4000, chunk=500
    )
    assert 0.5 * estimate == pytest.approx(
        expected, rel=0.15, abs=0.05 * abs(hess.diagonal()).sum().item()
    )
    # and the expansion predicts the change of log p for a small Gaussian perturbation
    torch.manual_seed(2)
    std = 1e-2
    noise = std * torch.randn(10000, 1, 4, 4, dtype=torch.float64)
    samples = torch.cat(
        [x0 + noise, x0 - noise]
    )  # antithetic: the first-order term cancels exactly
    with torch.no_grad():
        measured = (glow.log_prob(samples).mean() - glow.log_prob(x0[None])).item()
    predicted = 0.5 * std**2 * hess.diagonal().sum().item()
    assert measured == pytest.approx(predicted, rel=0.1)


def quadratic_cv_glow(levels=2, steps=2, size=8, seed=0):
    """A CV-Glow whose log-density is exactly quadratic in x: the coupling networks output zero
    (their last layer is the zero-initialised ZeroConv2d), ActNorm, the 1x1 convolutions and the
    top prior are random, and each split prior is a non-trivial linear-Gaussian: a random linear
    mean of the kept half, a constant log-std (its convolution weights stay zero, its bias not)."""
    torch.manual_seed(seed)
    glow = Glow(
        in_channels=1,
        image_size=size,
        levels=levels,
        steps=steps,
        hidden_channels=4,
        coupling="additive",
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in [step for level in glow.levels for step in level]:
            actnorm, conv = step.layers[0], step.layers[1]
            for p in (actnorm.bias, actnorm.log_scale, conv.lower, conv.upper, conv.log_s):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            actnorm.initialized.fill_(True)
        for split in glow.splits:
            conv = split.prior.conv
            conv.bias.copy_(torch.arange(len(conv.bias), dtype=conv.bias.dtype))  # label channels
            mean_channels = split._params(torch.zeros(1, split.keep, 2, 2))[0][0, :, 0, 0].long()
            shape = conv.weight[mean_channels].shape
            conv.weight[mean_channels] = 0.2 * torch.randn(shape, generator=g)
            conv.bias.copy_(0.3 * torch.randn(conv.bias.shape, generator=g))
            split.prior.log_scale.copy_(0.1 * torch.randn(split.prior.log_scale.shape, generator=g))
        for p in (glow.top_mean, glow.top_log_std):
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return glow.double().eval()


def two_sets(size=8, n=300, seed=5):
    """Integer images of two sets with different means and different full covariances: ``p``
    independent pixels, ``q`` smooth images (strongly correlated neighbours)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    k_p = 120 + 30 * randn(n, 1, size, size)
    smooth = torch.nn.functional.interpolate(
        randn(n, 1, 2, 2), size=(size, size), mode="bilinear", align_corners=True
    )
    k_q = 135 + 30 * smooth + 3 * randn(n, 1, size, size)
    return k_p.round().clamp(0, 255).long(), k_q.round().clamp(0, 255).long()


def test_quadratic_cv_glow_is_quadratic_with_a_non_trivial_split_prior():
    glow = quadratic_cv_glow()
    g = torch.Generator().manual_seed(1)
    x, v = 0.3 * torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        values = glow.log_prob(torch.stack([x + t * v for t in (-2.0, -1.0, 0.0, 1.0, 2.0)]))
        third = values[3] - 3 * values[2] + 3 * values[1] - values[0]
        fourth = values[4] - 4 * values[3] + 6 * values[2] - 4 * values[1] + values[0]
        second = values[3] - 2 * values[2] + values[1]
        assert abs(third) < 1e-9 * abs(second) and abs(fourth) < 1e-9 * abs(second)
        before = glow.log_prob(x[None])
        glow.splits[0].prior.conv.weight.zero_()  # the split prior's mean depended on the kept half
        assert (glow.log_prob(x[None]) - before).abs().item() > 1e-3


def test_second_order_prediction_is_exact_for_a_quadratic_log_density():
    """Different means and full covariances: the prediction needs its first-order term, the 1/2,
    and the off-diagonal covariances; with all of them it is the measured gap."""
    glow = quadratic_cv_glow()
    k_p, k_q = two_sets()
    result = second_order(DensityModule(glow, n_bits=8), k_p, k_q, chunk=50)
    measured = result["measured_gap"]
    assert result["predicted"] == pytest.approx(measured, rel=1e-6)
    first, second = result["predicted_first_order"], result["predicted_second_order"]
    assert first + second == pytest.approx(result["predicted"])
    assert abs(result["taylor_error_p"]) < 1e-9 * abs(measured)
    assert abs(result["taylor_error_q"]) < 1e-9 * abs(measured)
    # each part matters here, so dropping any of them misses by far more than the tolerance
    assert abs(first) > 0.1 * abs(measured) and abs(second) > 0.1 * abs(measured)
    assert abs(result["predicted_diagonal_only"] - second) > 0.1 * abs(measured)
    # the linearised closed form is exact here: split prior for half of the first level's latents
    assert result["closed_form_linear"] == pytest.approx(result["predicted_second_order"], rel=1e-9)


def test_second_order_matches_a_brute_force_taylor_expansion_on_a_nonlinear_glow():
    """Random couplings (log p not quadratic): every term against an explicit D x D Hessian from
    finite differences, a finite-difference gradient and explicit covariance matrices."""
    glow = tiny_cv_glow(levels=2, steps=2)
    g = torch.Generator().manual_seed(4)
    k_p = torch.randint(60, 200, (40, 1, 4, 4), generator=g)
    shared = torch.randint(0, 80, (40, 1, 1, 1), generator=g)  # correlated pixels
    k_q = (140 + 0.5 * (shared + torch.randint(0, 40, (40, 1, 4, 4), generator=g))).long()
    result = second_order(DensityModule(glow, n_bits=8), k_p, k_q, chunk=16)
    x_p, x_q = ((k.double() + 0.5) / 256 - 0.5 for k in (k_p, k_q))
    mu_p, mu_q = x_p.mean(0), x_q.mean(0)
    x0 = 0.5 * (mu_p + mu_q)
    hess = brute_force_hessian(glow.log_prob, x0, h=1e-4)  # the ReLUs have kinks: small steps
    h = 1e-5
    eye = torch.eye(16, dtype=torch.float64).view(16, 1, 4, 4) * h
    with torch.no_grad():
        grad = (glow.log_prob(x0 + eye) - glow.log_prob(x0 - eye)) / (2 * h)
        measured = (glow.log_prob(x_q).mean() - glow.log_prob(x_p).mean()).item()
    d_p, d_q = (x_p - mu_p).flatten(1), (x_q - mu_q).flatten(1)
    delta_sigma = d_q.T @ d_q / len(d_q) - d_p.T @ d_p / len(d_p)
    first = (grad @ (mu_q - mu_p).flatten()).item()
    second = 0.5 * (hess * delta_sigma).sum().item()
    assert result["predicted_first_order"] == pytest.approx(first, rel=1e-6)
    assert result["predicted_second_order"] == pytest.approx(second, rel=1e-4)
    assert result["predicted"] == pytest.approx(first + second, rel=1e-4)
    diagonal = 0.5 * (hess.diagonal() * delta_sigma.diagonal()).sum().item()
    assert result["predicted_diagonal_only"] == pytest.approx(diagonal, rel=1e-4)
    assert result["measured_gap"] == pytest.approx(measured, rel=1e-12)
    taylor_errors = result["taylor_error_p"] - result["taylor_error_q"]
    assert result["predicted"] - result["measured_gap"] == pytest.approx(taylor_errors, rel=1e-6)


def test_hutchinson_estimate_of_the_covariance_trace():
    glow = tiny_cv_glow(levels=2, steps=2)
    g = torch.Generator().manual_seed(6)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    d_p, d_q = 0.1 * randn(30, 1, 4, 4), randn(20, 1, 4, 4)
    d_q = 0.05 * (d_q + d_q.roll(1, dims=3))
    x0 = 0.2 * randn(1, 4, 4)
    exact = covariance_difference_trace(glow.log_prob, x0, d_p, d_q)
    estimate = covariance_difference_trace(
        glow.log_prob, x0, d_p, d_q, method="hutchinson", probes=4000, chunk=500
    )
    assert estimate == pytest.approx(exact, rel=0.1)


def test_linear_closed_form_uses_the_full_covariance_of_each_squeezed_block():
    """One level, couplings at zero: 1/2 Tr(H DeltaSigma) =
    -1/2 sum_{h,w} Tr(M^T Lambda_{h,w} M DeltaSigma_{h,w}), written out here with M from the
    weights and the full covariances of each squeezed block from the images."""
    glow = quadratic_cv_glow(levels=1, steps=3, size=4)
    k_p, k_q = two_sets(size=4, n=200)
    x_p, x_q = ((k.double() + 0.5) / 256 - 0.5 for k in (k_p, k_q))
    m = torch.eye(4, dtype=torch.float64)
    for step in glow.levels[0]:
        actnorm = torch.diag(torch.exp(step.layers[0].log_scale.detach().flatten()))
        m = step.layers[1].weight_matrix().detach() @ actnorm @ m

    # (N, position, channel): the 4 squeezed channels of each of the 2x2 positions
    def blocks(x):
        return glow.squeeze(x)[0].permute(0, 2, 3, 1).reshape(len(x), 4, 4)

    b_p, b_q = blocks(x_p - x_p.mean(0)), blocks(x_q - x_q.mean(0))
    expected = 0.0
    for pos in range(4):
        delta = b_q[:, pos].T @ b_q[:, pos] / len(b_q) - b_p[:, pos].T @ b_p[:, pos] / len(b_p)
        precision = torch.diag(torch.exp(-2 * glow.top_log_std.detach()[0, :, pos // 2, pos % 2]))
        expected += -0.5 * torch.trace(m.T @ precision @ m @ delta).item()
    closed = cv_glow_closed_form(glow, x_p, x_q)
    assert closed["closed_form_linear"] == pytest.approx(expected, rel=1e-10)
    result = second_order(DensityModule(glow, n_bits=8), k_p, k_q)
    assert result["predicted_second_order"] == pytest.approx(expected, rel=1e-8)


def test_paper_closed_form_equals_linear_form_for_diagonal_convolutions():
    glow = (
        Glow(
            in_channels=1,
            image_size=4,
            levels=1,
            steps=2,
            hidden_channels=4,
            coupling="additive",
            lu=False,
        )
        .double()
        .eval()
    )
    with torch.no_grad():
        for step in glow.levels[0]:
            step.layers[1].weight.copy_(
                torch.diag(torch.tensor([0.5, -1.5, 2.0, 1.0], dtype=torch.float64))
            )
    x_p = torch.rand(50, 1, 4, 4, dtype=torch.float64)
    closed = cv_glow_closed_form(glow, x_p, 0.3 * x_p)
    assert closed["sigma"] == 1.0
    assert closed["closed_form_paper"] == pytest.approx(closed["closed_form_linear"], rel=1e-12)
    assert closed["closed_form_linear"] > 0  # the lower-variance set gets the higher likelihood


def test_squeezed_channel_sums():
    per_pixel = torch.arange(16.0).view(1, 4, 4)
    sums = squeezed_channel_sums(per_pixel)
    assert sums.tolist() == [0 + 2 + 8 + 10, 1 + 3 + 9 + 11, 4 + 6 + 12 + 14, 5 + 7 + 13 + 15]


def test_graying_and_decomposition():
    k = torch.randint(0, 256, (6, 1, 8, 8))
    mean = k.double().mean(dim=(0, 2, 3)).view(-1, 1, 1)
    assert torch.equal(gray(k, 1.0, mean, 8), k)
    assert (gray(k, 0.0, mean, 8) == mean.round().long()).all()
    module = DensityModule(
        Glow(in_channels=1, image_size=8, levels=2, steps=1, hidden_channels=8), n_bits=8
    )
    rows = graying_curve(module, k)
    assert [r["factor"] for r in rows] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert rows[0]["pixel_std"] > rows[2]["pixel_std"] > rows[-1]["pixel_std"] == 0.0
    table, _ = decomposition(module, {"a": k, "b": gray(k, 0.5, mean, 8)})
    for row in table:
        assert row["log_px"] == pytest.approx(row["log_pz"] + row["log_det"])
        assert row["bpd"] == pytest.approx(-row["log_px"] / (64 * math.log(2)) + 8, abs=1e-4)


# ----------------------------------------------------------------------------- loading checkpoints
def tiny_fit_config(root: Path, steps: int = 2) -> str:
    """test_cli's tiny Glow config, made constant-volume, with ``steps`` flow steps per level."""
    return str(
        tiny_config(
            root / f"steps{steps}",
            **{
                "max_steps: 3": "max_steps: 2",
                "steps: 2, hidden_channels: 8}": (
                    f"steps: {steps}, hidden_channels: 8, coupling: additive}}"
                ),
            },
        )
    )


class Payload:
    """Unpickling this object runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "the checkpoint's code ran"))


def test_a_crafted_checkpoint_runs_no_code_when_loaded(tmp_path):
    config = tiny_fit_config(tmp_path)
    module, _ = load(config, None)
    marker = tmp_path / "marker.txt"
    crafted = tmp_path / "crafted.ckpt"
    payload = {"x": Payload(str(marker))}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": payload}, crafted)
    with pytest.raises(ValueError, match=r"crafted\.ckpt.*not loaded"):
        load(config, str(crafted))
    with pytest.raises(ValueError, match=r"crafted\.ckpt.*not loaded"):
        LikelihoodRatio(str(crafted)).prepare(module)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # what the old loader did: the payload runs
    assert marker.exists()


def test_a_checkpoint_of_another_config_is_a_clear_error(tmp_path):
    config, other = tiny_fit_config(tmp_path, steps=2), tiny_fit_config(tmp_path, steps=1)
    module, _ = load(other, None)
    ckpt = tmp_path / "other.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    with pytest.raises(ValueError) as error:
        load(config, str(ckpt))
    message = str(error.value)
    assert "other.ckpt" in message and "steps2/tiny.yaml" in message
    assert "missing in the checkpoint" in message
    assert "network.levels.0.1.layers.0.bias" in message
    # the same architecture with a different width: the shapes are named
    with pytest.raises(ValueError, match=r"different shapes.*checkpoint .* vs model"):
        load(
            config,
            str(ckpt),
            [
                "--model.init_args.network.init_args.steps=1",
                "--model.init_args.network.init_args.hidden_channels=4",
            ],
        )
    assert load(other, str(ckpt))[0].state_dict().keys() == module.state_dict().keys()


def test_a_checkpoint_written_by_fit_loads_weights_only_and_strictly(tmp_path, monkeypatch):
    """Everything ``fit`` writes into a checkpoint (hyper-parameters, loops, callbacks' states,
    optimiser) passes ``torch.load(weights_only=True)``; the analysis and the likelihood ratio
    load it."""
    from lit_rev.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    config = tiny_fit_config(tmp_path)
    cli = cli_main(["fit", "--config", config])
    last = Path(cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2
    module, _ = load(config, str(last))
    for key, value in saved["state_dict"].items():
        assert torch.equal(module.state_dict()[key], value), key
    score = LikelihoodRatio(str(last))
    score.prepare(module)
    for key, value in score.background.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"network.{key}"]), key


def test_a_bad_override_exits_2_naming_the_key(tmp_path, capsys):
    """As ``python -m lit_rev`` does: the parser's message, no traceback."""
    config = tiny_fit_config(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "graying",
                "--config",
                config,
                "--allow_untrained",
                "--",
                "--model.init_args.optimizer=sgd",
            ]
        )
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert 'Parser key "optimizer"' in err and "sgd" in err and "steps2/tiny.yaml" in err


@pytest.mark.slow
def test_analysis_commands_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "density" / "quick_cvglow_naturalpatches.yaml")
    small = [
        "--model.init_args.network.init_args.steps=1",
        "--model.init_args.network.init_args.hidden_channels=8",
        "--data.init_args.max_test=16",
    ]
    for analysis in ("decomposition", "graying", "second_order"):
        rows = main(
            [
                analysis,
                "--config",
                config,
                "--out_dir",
                str(tmp_path),
                "--max_images",
                "16",
                "--curvature_points",
                "1",
                "--allow_untrained",
                *small,
            ]
        )
        assert (tmp_path / f"{analysis}.md").exists() and rows
    quantities = {row["quantity"] for row in rows}
    assert {
        "predicted",
        "predicted_first_order",
        "predicted_second_order",
        "predicted_diagonal_only",
        "predicted_avg_curvature",
        "measured_gap",
        "closed_form_linear",
        "closed_form_paper",
    } <= quantities
    for row in rows:
        assert row["bpd"] == pytest.approx(-row["nats"] / (784 * math.log(2)))
    assert (tmp_path / "graying.png").exists() and (tmp_path / "decomposition.png").exists()

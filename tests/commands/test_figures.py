"""python -m lit_rev.commands.figures: every figure function writes a readable PNG on a tiny
budget, and none draws numbers that are not finite."""

import json
import math
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import torch

from lit_rev.commands import figures
from lit_rev.commands.figures import NonFiniteResult
from lit_rev.report import save_figure

# The quickstart config with a tiny Glow, 2 steps and 16 images per test set.
TINY_QUICKSTART = [
    "--trainer.max_steps=2",
    "--model.init_args.warmup_steps=1",
    "--model.init_args.network.init_args.steps=1",
    "--model.init_args.network.init_args.hidden_channels=8",
    "--data.init_args.max_test=16",
    "--data.init_args.test_batch_size=16",
]


def assert_png(path: Path) -> None:
    assert path.suffix == ".png" and path.is_file()
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert image.std() > 0  # not a blank canvas


def test_revnet_memory_figure(tmp_path):
    path = figures.revnet_memory(
        tmp_path, tmp_path / "out", depths=(38,), batch_size=2, image_size=8
    )
    assert path == tmp_path / "out" / "revnet_memory.png"
    assert_png(path)
    rows = json.loads((tmp_path / "revnet_memory.json").read_text())["rows"]
    mib = {(r["net"], r["backward"]): r["saved_mib"] for r in rows}
    assert set(mib) == {
        (n, b) for n in ("resnet32", "revnet38") for b in ("memory-saving", "plain")
    }
    # the reversible backward keeps less than plain autograd on the same network
    assert 0 < mib["revnet38", "memory-saving"] < mib["revnet38", "plain"]
    assert 0 < mib["resnet32", "memory-saving"] < mib["resnet32", "plain"]


def test_revnet_memory_rejects_an_unknown_depth():
    with pytest.raises(ValueError, match="depths: 56"):
        figures.revnet_memory_rows(depths=(56,))


def test_bpd_histograms_plot_shows_each_sets_auroc(tmp_path):
    g = torch.Generator().manual_seed(0)
    bpd = {
        "in": torch.randn(200, generator=g) + 5,
        "far": torch.randn(200, generator=g) + 50,  # every OOD image less likely: AUROC 1
        "same": torch.randn(200, generator=g) + 5,
    }
    fig = figures.bpd_histograms_plot(bpd, "in")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[0] == "far: AUROC 1.00" and titles[1].startswith("same: AUROC 0.")
    assert_png(save_figure(fig, tmp_path, "hist"))


def test_grad_plane_plot(tmp_path):
    rows = [
        {"model": "Vanilla", "accuracy": 0.85, "discrimination": 0.18},
        {"model": "GRAD-pred", "accuracy": 0.83, "discrimination": 0.03},
    ]
    fig = figures.grad_plane_plot(rows)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["Vanilla", "GRAD-pred"]
    assert_png(save_figure(fig, tmp_path, "plane"))


def nan_runs():
    nan = math.nan
    values = {
        "in": {"log_pz": torch.ones(4), "log_det": torch.ones(4)},
        "ood": {"log_pz": torch.tensor([1.0, nan, 2.0, 3.0]), "log_det": torch.ones(4)},
    }
    return {
        "histograms": (
            lambda: figures.bpd_histograms_plot(
                {"in": torch.ones(4), "ood": torch.tensor([1.0, math.inf, 2, 3])}, "in"
            ),
            "the bits/dim of ood",
        ),
        "decomposition": (lambda: figures.decomposition_plot(values, "in"), "log_pz of ood"),
        "graying": (
            lambda: figures.graying_plot(
                [{"factor": 1.0, "bpd": 4.0}, {"factor": 0.5, "bpd": nan}], "in"
            ),
            "bits/dim",
        ),
        "revnet": (
            lambda: figures.revnet_memory_plot(
                [{"net": "revnet38", "depth": 38, "backward": "plain", "saved_mib": nan}], 2, 8
            ),
            "saved MiB",
        ),
        "plane": (
            lambda: figures.grad_plane_plot(
                [{"model": "GRAD-pred", "accuracy": nan, "discrimination": 0.1}]
            ),
            "the accuracy of GRAD-pred",
        ),
    }


@pytest.mark.parametrize("figure", sorted(nan_runs()))
def test_non_finite_numbers_are_an_error_not_a_plot(figure):
    draw, what = nan_runs()[figure]
    with pytest.raises(NonFiniteResult, match="1 of .* values of " + what):
        draw()


def test_main_makes_the_other_figures_and_exits_1_naming_a_failed_one(
    tmp_path, monkeypatch, capsys
):
    def fine(work_dir, out_dir, **kwargs):
        fig = figures.grad_plane_plot([{"model": "a", "accuracy": 0.8, "discrimination": 0.1}])
        return save_figure(fig, out_dir, "fine")

    def broken(work_dir, out_dir, **kwargs):
        raise NonFiniteResult("the run diverged")

    monkeypatch.setattr(figures, "FIGURES", {"broken": broken, "fine": fine})
    with pytest.raises(SystemExit, match="figures that failed: broken: NonFiniteResult: the run"):
        figures.main(["--out", str(tmp_path / "out"), "--work_dir", str(tmp_path)])
    assert_png(tmp_path / "out" / "fine.png")
    out = capsys.readouterr().out
    assert "[1/2] broken FAILED" in out and f"[2/2] wrote {tmp_path / 'out' / 'fine.png'}" in out


@pytest.mark.slow
def test_quickstart_figures_train_once_and_refuse_a_diverged_model(tmp_path, capsys):
    out = tmp_path / "out"
    paths = [
        make(tmp_path, out, overrides=TINY_QUICKSTART)
        for make in (
            figures.quickstart_bpd_histograms,
            figures.quickstart_decomposition,
            figures.quickstart_graying,
        )
    ]
    assert [p.name for p in paths] == [
        "quickstart_bpd_histograms.png",
        "quickstart_decomposition.png",
        "quickstart_graying.png",
    ]
    for path in paths:
        assert_png(path)
    log = capsys.readouterr().out
    assert log.count("  training (") == 1 and log.count("reusing the trained quickstart Glow") == 2
    rows = json.loads((tmp_path / "quickstart_bpd_histograms.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [16] * 6  # the in-distribution set and 5 OOD sets

    with pytest.raises(FileExistsError, match="--retrain"):  # other settings, same work dir
        figures.quickstart_graying(tmp_path, out, overrides=TINY_QUICKSTART[:-1])

    # the same run with one weight set to NaN: an error naming the set, no figure
    diverged = tmp_path / "diverged"
    shutil.copytree(figures.quickstart_run_dir(tmp_path), figures.quickstart_run_dir(diverged))
    ckpt = figures.quickstart_run_dir(diverged) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("top_mean"))
    state["state_dict"][key].fill_(math.nan)
    torch.save(state, ckpt)
    with pytest.raises(NonFiniteResult, match="the bits/dim of naturalpatches"):
        figures.quickstart_bpd_histograms(diverged, diverged / "out", overrides=TINY_QUICKSTART)
    assert not (diverged / "out").exists()


@pytest.mark.slow
def test_grad_plane_on_a_tiny_budget(tmp_path):
    runs = {"Vanilla": ("vanilla_adult.yaml",), "GRAD-pred": ("grad_pred_adult.yaml",)}
    extra = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
    path = figures.grad_plane(tmp_path, tmp_path / "out", runs=runs, extra=extra)
    assert_png(path)
    rows = json.loads((tmp_path / "grad_plane.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["Vanilla", "GRAD-pred"]
    assert all(0.5 < r["accuracy"] <= 1 and 0 <= r["discrimination"] <= 1 for r in rows)

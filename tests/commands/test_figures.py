"""python -m lit_rev.commands.figures: every figure function writes a readable PNG on a tiny
budget, and none draws numbers that are not finite."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from lit_rev.commands import figures
from lit_rev.fair.tradeoff import grad_plane_plot
from lit_rev.report import NonFiniteResult, save_figure
from tests.pngs import assert_png

CONFIGS = Path(__file__).parents[2] / "configs"

# The quickstart config with a tiny Glow, 2 steps and 16 images per test set.
TINY_QUICKSTART = [
    "--trainer.max_steps=2",
    "--model.init_args.warmup_steps=1",
    "--model.init_args.network.init_args.steps=1",
    "--model.init_args.network.init_args.hidden_channels=8",
    "--data.init_args.max_test=16",
    "--data.init_args.test_batch_size=16",
]


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


def test_main_makes_the_other_figures_and_exits_1_naming_a_failed_one(
    tmp_path, monkeypatch, capsys
):
    def fine(work_dir, out_dir, **kwargs):
        fig = grad_plane_plot([{"model": "a", "accuracy": 0.8, "discrimination": 0.1}])
        return save_figure(fig, out_dir, "fine")

    def broken(work_dir, out_dir, **kwargs):
        raise NonFiniteResult("the run diverged")

    monkeypatch.setattr(figures, "FIGURES", {"broken": broken, "fine": fine})
    with pytest.raises(SystemExit, match="figures that failed: broken: NonFiniteResult: the run"):
        figures.main(["--out", str(tmp_path / "out"), "--work_dir", str(tmp_path)])
    assert_png(tmp_path / "out" / "fine.png")
    out = capsys.readouterr().out
    assert "[1/2] broken FAILED" in out and f"[2/2] wrote {tmp_path / 'out' / 'fine.png'}" in out


def test_configs_are_read_from_the_current_directory_never_the_source_tree(tmp_path, monkeypatch):
    made = []

    def grad_plane(work_dir, out_dir, **kwargs):
        made.append(kwargs)
        (tmp_path / "made.png").write_bytes(b"png")
        return tmp_path / "made.png"

    monkeypatch.setattr(figures, "FIGURES", {"grad_plane": grad_plane})
    monkeypatch.chdir(tmp_path)  # no configs/ here, though the source tree has them
    with pytest.raises(SystemExit) as stop:
        figures.main(["--only", "grad_plane", "--out", "out", "--work_dir", "work"])
    assert stop.value.code == 2 and made == []
    with pytest.raises(FileNotFoundError, match=r"--quickstart_config configs/quickstart\.yaml"):
        figures.train_quickstart(tmp_path / "work")
    # a copy of the configs in the current directory is what the figures read
    shutil.copytree(CONFIGS / "fair", tmp_path / "configs" / "fair")
    chains = figures.grad_plane_chains()
    assert chains["GRAD-auto"] == [
        str(Path("configs/fair/grad_auto_adult.yaml")),
        str(Path("configs/fair/grad_auto_adult_classifier.yaml")),
    ]
    figures.main(["--only", "grad_plane", "--out", "out", "--work_dir", "work"])
    assert made == [{"config_dir": "configs/fair"}]


@pytest.mark.parametrize(
    ("flag", "figure"),
    [("--quickstart_config", "quickstart_graying"), ("--fair_configs", "grad_plane")],
)
def test_a_missing_config_stops_the_command_naming_its_flag(
    tmp_path, monkeypatch, capsys, flag, figure
):
    made = []
    monkeypatch.setattr(figures, "FIGURES", {figure: lambda *args, **kwargs: made.append(args)})
    with pytest.raises(SystemExit) as stop:
        figures.main(["--only", figure, "--work_dir", str(tmp_path), flag, str(tmp_path / "nope")])
    assert stop.value.code == 2 and made == []
    assert f"{flag} {tmp_path / 'nope'}" in capsys.readouterr().err


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
    path = figures.grad_plane(
        tmp_path, tmp_path / "out", runs=runs, extra=extra, config_dir=CONFIGS / "fair"
    )
    assert_png(path)
    rows = json.loads((tmp_path / "grad_plane.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["Vanilla", "GRAD-pred"]
    assert all(0.5 < r["accuracy"] <= 1 and 0 <= r["discrimination"] <= 1 for r in rows)

"""The command line: errors name the offending key, print_config, resuming, DDP."""

import textwrap
from pathlib import Path

import pytest
import torch

from lit_rev.cli import main
from tests.ddp_helpers import assert_identical_parameters, fit_on_two_ranks

REPO = Path(__file__).resolve().parents[1]

TINY = """
seed_everything: 0
trainer:
  accelerator: cpu
  max_steps: 3
  limit_val_batches: 1
  enable_progress_bar: false
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {{save_dir: {root}/logs, name: tiny}}
  callbacks: {callbacks}
model:
  class_path: DensityModule
  init_args:
    warmup_steps: 2
    network:
      class_path: Glow
      init_args: {{in_channels: 1, image_size: 8, levels: 2, steps: 2, hidden_channels: 8}}
data:
  class_path: ImageDataModule
  init_args:
    dataset: Digits
    ood: [LFWCrops]
    batch_size: 16
    max_test: 32
"""


def tiny_config(root: Path, callbacks: str = "[]", **replace) -> Path:
    text = TINY.format(root=root, callbacks=callbacks)
    for old, new in replace.items():
        text = text.replace(old, new)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "tiny.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("class_path: Glow", "class_path: NoSuchFlow", "NoSuchFlow"),
        ("levels: 2", "levelz: 2", "levelz"),
        ("batch_size: 16", "batch_size: sixteen", "batch_size"),
    ],
)
def test_bad_yaml_exits_nonzero_naming_the_key(tmp_path, capsys, old, new, key):
    config = tiny_config(tmp_path, **{old: new})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code != 0
    assert key in capsys.readouterr().err


def test_print_config_resolves_short_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tiny_config(tmp_path)), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "lit_rev.density.DensityModule" in out and "lit_rev.data.Digits" in out


@pytest.mark.slow
def test_fit_writes_config_checkpoint_and_resumes(tmp_path):
    config = tiny_config(tmp_path)
    cli = main(["fit", "--config", str(config)])
    log_dir = Path(cli.trainer.logger.log_dir)
    assert (log_dir / "config.yaml").exists()
    last = log_dir / "checkpoints" / "last.ckpt"
    assert last.exists()
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 3

    resumed = main(["fit", "--config", str(config), "--trainer.max_steps=5", f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 5
    optimizer = resumed.trainer.optimizers[0]
    steps = {int(s["step"]) for s in optimizer.state.values()}
    assert steps == {5}  # Adamax moments continued from the checkpoint, not restarted
    actnorm = resumed.model.network.levels[0][0].layers[0]
    assert bool(actnorm.initialized)


def test_fit_then_ood_evaluation_in_one_command(tmp_path):
    config = tiny_config(tmp_path, callbacks="[{class_path: OODEvaluation}]")
    cli = main(["fit", "--config", str(config)])
    log_dir = Path(cli.trainer.logger.log_dir)
    report = (log_dir / "ood_report.md").read_text()
    assert "digits" in report and "lfwcrops" in report and "auroc_bpd" in report
    assert (log_dir / "hist_bpd.png").exists() and (log_dir / "samples.png").exists()


def test_test_subcommand_runs_named_ood_loaders(tmp_path):
    config = tiny_config(tmp_path)
    cli = main(["test", "--config", str(config), "--allow_untrained=true"])
    metrics = cli.trainer.callback_metrics
    assert "test/bpd/digits" in metrics and "test/bpd/lfwcrops" in metrics


@pytest.mark.parametrize("subcommand, ckpt", [("test", None), ("test", "last"), ("predict", None)])
def test_scoring_an_untrained_model_is_refused_naming_the_fix(tmp_path, capsys, subcommand, ckpt):
    args = [subcommand, "--config", str(tiny_config(tmp_path))]
    args += [f"--ckpt_path={ckpt}"] if ckpt else []
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "untrained" in err and "--ckpt_path=" in err and "--allow_untrained=true" in err
    assert not (tmp_path / "logs").exists()  # refused before anything was built or written


def test_without_a_logger_the_config_never_overwrites_a_file(tmp_path, monkeypatch):
    """``--trainer.logger=false`` used to write ``config.yaml`` into the working directory,
    over the user's own file."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "config.yaml"
    mine.write_text("my own notes\n")
    config = tiny_config(tmp_path / "cfg", **{"max_steps: 3": "max_steps: 1"})
    main(["fit", "--config", str(config), "--trainer.logger=false"])
    assert mine.read_text() == "my own notes\n"
    saved = tmp_path / "config_1.yaml"
    assert "DensityModule" in saved.read_text() and "max_steps: 1" in saved.read_text()


def test_predict_returns_per_image_scores(tmp_path):
    cli = main(
        [
            "predict",
            "--config",
            str(tiny_config(tmp_path)),
            "--trainer.limit_predict_batches=1",
            "--allow_untrained=true",
        ]
    )
    outputs = cli.trainer.predict_loop.predictions
    assert len(outputs) == 2  # in-distribution and one OOD set
    first = outputs[0][0]
    assert first["bpd"].shape == (16,) and torch.allclose(
        first["bpd"], first["prior_bpd"] + first["logdet_bpd"]
    )


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_parameters(tmp_path):
    rank0, rank1 = fit_on_two_ranks(["--config", str(tiny_config(tmp_path))], tmp_path)
    assert_identical_parameters(rank0, rank1)
    actnorm_bias = rank0["network.levels.0.0.layers.0.bias"]
    assert bool(rank0["network.levels.0.0.layers.0.initialized"]) and actnorm_bias.abs().sum() > 0


@pytest.fixture(scope="module")
def fit_output(tmp_path_factory):
    """Terminal output, log records and warnings of one tiny ``fit`` with the rich bar and the
    model summary on, as a user sees them."""
    import contextlib
    import io
    import logging
    import warnings

    root = tmp_path_factory.mktemp("noise")
    config = tiny_config(root, **{"enable_progress_bar: false": "enable_progress_bar: true"})
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    out = io.StringIO()
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            main(["fit", "--config", str(config)])
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    warned = [str(w.message) for w in caught]
    return {"stdout": out.getvalue(), "log": "\n".join(records), "warnings": warned}


def test_progress_bar_shows_the_step_bound_not_a_negative_epoch(fit_output):
    assert "Epoch 0 (max_steps 3)" in fit_output["stdout"]
    assert "/-2" not in fit_output["stdout"]


def test_epoch_bound_still_reads_epoch_of_last(tmp_path):
    from lit_rev.cli import LitRevCLI

    args = [
        "--config",
        str(tiny_config(tmp_path)),
        "--trainer.enable_progress_bar=true",
        "--trainer.max_epochs=10",
    ]
    cli = LitRevCLI(args=args, run=False)
    bar = cli.trainer.progress_bar_callback
    bar.setup(cli.trainer, cli.model, "fit")
    assert bar.train_description(4).strip() == "Epoch 4/9"


def test_no_third_party_noise_but_real_messages_stay(fit_output):
    assert "litlogger" not in fit_output["log"] and "litmodels" not in fit_output["log"]
    assert "GPU available" in fit_output["log"]  # Lightning's own information still shows
    assert not any("LeafSpec" in w for w in fit_output["warnings"])
    summary = fit_output["stdout"]
    assert "Params" in summary and "Total params" in summary
    assert "FLOPs" not in summary  # nothing was measured: no column of zeros


@pytest.mark.slow
def test_evaluating_a_diverged_checkpoint_exits_nonzero(tmp_path, capsys):
    """Non-finite scores make the report say the run failed, and the exit code says so too."""
    config = tiny_config(tmp_path)
    cli = main(["fit", "--config", str(config)])
    ckpt = Path(cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["state_dict"]["network.top_mean"].fill_(float("nan"))  # a diverged model
    torch.save(state, ckpt)
    with pytest.raises(SystemExit) as stop:
        main(["test", "--config", str(config), f"--ckpt_path={ckpt}"])
    assert stop.value.code == 1
    assert "the OOD evaluation failed" in capsys.readouterr().err


def _callbacks_of(tmp_path, callbacks: str = "[]", *args: str) -> list:
    from lit_rev.cli import LitRevCLI

    config = tiny_config(tmp_path, callbacks=callbacks)
    cli = LitRevCLI(args=["--config", str(config), *args], run=False)
    return cli.trainer.callbacks


def _kinds(callbacks: list) -> list[str]:
    return sorted(type(c).__name__ for c in callbacks)


def test_every_run_gets_the_default_callbacks(tmp_path):
    callbacks = _callbacks_of(
        tmp_path, "[]", "--trainer.enable_progress_bar=true", "--checkpoint_every_n_steps=7"
    )
    assert _kinds(callbacks) == [
        "FaultCheckpoint",
        "LastCheckpoint",
        "PredictionWriter",
        "RunConfigSaver",
        "StepBoundProgressBar",
        "SummaryWithoutUnmeasuredFlops",
    ]
    (last,) = [c for c in callbacks if type(c).__name__ == "LastCheckpoint"]
    assert last.every_n_steps == 7


def test_a_callback_the_config_lists_replaces_only_the_default_of_its_kind(tmp_path):
    listed = (
        "[{class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {save_top_k: 0}},"
        " {class_path: lightning.pytorch.callbacks.TQDMProgressBar},"
        " {class_path: lightning.pytorch.callbacks.ModelSummary}]"
    )
    callbacks = _callbacks_of(tmp_path, listed, "--trainer.enable_progress_bar=true")
    assert _kinds(callbacks) == [
        "FaultCheckpoint",
        "ModelCheckpoint",
        "ModelSummary",
        "PredictionWriter",
        "RunConfigSaver",
        "TQDMProgressBar",
    ]


def test_switching_a_feature_off_drops_its_default_callbacks(tmp_path):
    off = ["--trainer.enable_checkpointing=false", "--trainer.enable_model_summary=false"]
    callbacks = _callbacks_of(tmp_path, "[]", *off)
    assert _kinds(callbacks) == ["PredictionWriter", "RunConfigSaver"]


def test_the_cli_overrides_no_protected_lightning_method():
    """Lightning may rename or change its protected methods in any release; LitRevCLI and the
    parser set-up it shares with lit_rev.config use the public hooks only
    (``instantiate_trainer``, ``instantiate_classes``, ``before_instantiate_classes``,
    ``__init__``)."""
    from lightning.pytorch.cli import LightningCLI

    import lit_rev.cli
    import lit_rev.config
    from lit_rev.cli import LitRevCLI

    ours = [
        kind
        for module in (lit_rev.cli, lit_rev.config)
        for kind in vars(module).values()
        if isinstance(kind, type) and issubclass(kind, LightningCLI) and kind is not LightningCLI
    ]
    assert LitRevCLI in ours and lit_rev.config.ConfigBuilder in ours
    protected = [
        f"{kind.__name__}.{name}"
        for kind in ours
        for name in vars(kind)
        if name.startswith("_") and not name.startswith("__") and hasattr(LightningCLI, name)
    ]
    assert protected == []


def test_a_ddp_run_leaves_no_process_group_behind(tmp_path, monkeypatch):
    """main() destroys the process group a DDP run created: left to interpreter exit, gloo's
    teardown now and then aborted a finished 2-process run (exit status 134)."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    cli = main(
        [
            "fit",
            "--config",
            str(tiny_config(tmp_path)),
            "--trainer.strategy=ddp",
            "--trainer.devices=1",
            "--trainer.accelerator=cpu",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            f"--trainer.default_root_dir={tmp_path}",  # the config file goes there, not to cwd
        ]
    )
    assert type(cli.trainer.strategy).__name__ == "DDPStrategy"
    assert not torch.distributed.is_initialized()

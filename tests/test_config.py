"""lit_rev.config.instantiate: the model and DataModule of a config as the command line builds
them, without a Trainer; checkpoints loaded strictly and safely."""

import functools
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import Namespace
from lightning.pytorch.loggers import TensorBoardLogger

from lit_rev.cli import LitRevCLI
from lit_rev.cli import main as cli_main
from lit_rev.config import ConfigError, claim_version_dir, instantiate, instantiate_with_trainer
from tests.test_cli import tiny_config

REPO = Path(__file__).resolve().parents[1]

OVERRIDES = ["--model.init_args.lr=0.01", "--data.init_args.batch_size=8"]


def _five_bit_config(root: Path) -> str:
    """test_cli's tiny Glow on 5-bit images: ``n_bits`` left unset in the model (it follows
    the data), two training steps."""
    return str(
        tiny_config(
            root, **{"max_steps: 3": "max_steps: 2", "max_test: 32": "max_test: 32\n    n_bits: 5"}
        )
    )


def test_instantiate_builds_the_objects_and_hyper_parameters_the_cli_builds(tmp_path):
    config = str(tiny_config(tmp_path))
    cli = LitRevCLI(args=["--config", config, *OVERRIDES], run=False)
    model, dm = instantiate(config, OVERRIDES)
    assert type(model) is type(cli.model) and type(dm) is type(cli.datamodule)
    assert type(model.network) is type(cli.model.network)
    assert dict(model.hparams) == dict(cli.model.hparams)
    assert dict(dm.hparams) == dict(cli.datamodule.hparams)
    assert model.hparams.lr == 0.01 and dm.batch_size == 8  # the overrides applied
    # seeded as the command line seeds: the same untrained weights
    ours, theirs = model.state_dict(), cli.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_instantiate_builds_no_trainer_and_no_logger(tmp_path, monkeypatch):
    for kind in (pl.Trainer, TensorBoardLogger):

        @functools.wraps(kind.__init__)  # the parser still reads the signature
        def refuse(*args, **kwargs):
            raise AssertionError("instantiate built a Trainer or a logger")

        monkeypatch.setattr(kind, "__init__", refuse)
    model, dm = instantiate(tiny_config(tmp_path))
    assert model._trainer is None and dm.trainer is None
    # the patch bites: building the run's logger and Trainer fails
    with pytest.raises(Exception, match="built a Trainer or a logger"):
        instantiate_with_trainer(tiny_config(tmp_path))


def test_several_configs_apply_in_order_like_repeated_config_arguments(tmp_path):
    config = tiny_config(tmp_path)
    later = tmp_path / "later.yaml"
    later.write_text("model:\n  init_args:\n    lr: 0.02\ndata:\n  init_args:\n    batch_size: 4\n")
    model, dm = instantiate([config, later], ["--data.init_args.batch_size=2"])
    cli = LitRevCLI(
        args=["--config", str(config), "--config", str(later), "--data.init_args.batch_size=2"],
        run=False,
    )
    assert model.hparams.lr == 0.02 == cli.model.hparams.lr
    assert dm.batch_size == 2 == cli.datamodule.batch_size


@pytest.mark.parametrize(
    "replace, overrides, key",
    [
        ({"levels: 2": "levelz: 2"}, [], "levelz"),
        ({}, ["--data.init_args.batch_size=sixteen"], "batch_size"),
        ({}, ["--model.init_args.optimizer=sgd"], "optimizer"),
    ],
    ids=["yaml-key", "override-value", "literal-choice"],
)
def test_a_bad_key_or_value_is_the_parser_s_error_naming_it(
    tmp_path, capsys, replace, overrides, key
):
    config = tiny_config(tmp_path, **replace)
    with pytest.raises(ConfigError) as error:
        instantiate(config, overrides)
    message = str(error.value)
    assert str(config) in message and key in message
    # the command line names the same key with the same words
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(config), *overrides])
    printed = capsys.readouterr().err
    parser_message = message.split(" does not parse: ", 1)[1]
    assert key in printed
    for line in parser_message.splitlines():
        assert line.strip() in printed


def test_overrides_must_be_a_list_and_config_not_empty(tmp_path):
    with pytest.raises(TypeError, match="wrap it in a list"):
        instantiate(tiny_config(tmp_path), "--model.init_args.lr=0.01")
    with pytest.raises(ValueError, match="at least one YAML"):
        instantiate([])


class Payload:
    """Unpickling this object runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "the checkpoint's code ran"))


def test_an_unsafe_pickle_is_refused_and_runs_no_code(tmp_path):
    config = tiny_config(tmp_path)
    model, _ = instantiate(config)
    marker = tmp_path / "marker.txt"
    crafted = tmp_path / "crafted.ckpt"
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": Payload(str(marker))}, crafted
    )
    with pytest.raises(ValueError, match=r"crafted\.ckpt.*not loaded.*weights_only=True"):
        instantiate(config, ckpt_path=crafted)
    assert not marker.exists()


def test_a_checkpoint_of_another_config_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path / "two_steps")
    other = tiny_config(tmp_path / "one_step", **{"steps: 2": "steps: 1"})
    model, _ = instantiate(other)
    ckpt = tmp_path / "one_step.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    with pytest.raises(ValueError) as error:
        instantiate(config, ckpt_path=ckpt)
    message = str(error.value)
    assert "one_step.ckpt" in message and "two_steps/tiny.yaml" in message
    assert "missing in the checkpoint" in message and "network.levels.0.1" in message
    assert "the config (and overrides) the checkpoint was trained with" in message
    widths = ["--model.init_args.network.init_args.hidden_channels=4"]
    with pytest.raises(ValueError, match=r"hidden_channels=4: .*different shapes"):
        instantiate(other, widths, ckpt_path=ckpt)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        instantiate(config, ckpt_path=tmp_path / "absent.ckpt")


def test_fit_then_instantiate_from_the_checkpoint_scores_identically(tmp_path, monkeypatch):
    """The weights and the 5-bit depth the run took from its DataModule both come back."""
    monkeypatch.chdir(tmp_path)
    config = _five_bit_config(tmp_path)
    cli = cli_main(["fit", "--config", config])
    last = Path(cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    cli.datamodule.setup("test")
    k = torch.stack([torch.as_tensor(cli.datamodule.test_sets[0][i][0]) for i in range(8)]).long()
    assert int(k.max()) < 2**5
    fitted = cli.model.eval().scores(k)

    model, dm = instantiate(config, ckpt_path=last)
    assert model.n_bits == dm.n_bits == 5 and model.hparams.n_bits is None
    loaded = model.eval().scores(k)
    assert fitted.keys() == loaded.keys()
    for key, value in fitted.items():
        assert torch.equal(loaded[key], value), key
    untrained, _ = instantiate(config)  # the same config without the checkpoint differs
    assert not torch.equal(untrained.eval().scores(k)["bpd"], fitted["bpd"])


def test_instantiate_with_trainer_builds_the_run_of_the_cli(tmp_path):
    config = tiny_config(tmp_path)
    trainer, model, dm = instantiate_with_trainer(config, ["--trainer.max_steps=1"])
    cli = LitRevCLI(args=["--config", str(config), "--trainer.max_steps=1"], run=False)
    assert trainer.max_steps == 1 == cli.trainer.max_steps
    kinds = sorted(type(c).__name__ for c in trainer.callbacks)
    assert kinds == sorted(type(c).__name__ for c in cli.trainer.callbacks)
    # the same logs directory; each built run claims its own version in it
    mine, theirs = Path(trainer.logger.log_dir), Path(cli.trainer.logger.log_dir)
    assert mine.parent == theirs.parent and (mine.name, theirs.name) == ("version_0", "version_1")
    assert dict(model.hparams) == dict(cli.model.hparams)
    assert type(dm) is type(cli.datamodule)


def test_a_fairness_checkpoint_loads_into_a_module_built_from_its_config(tmp_path, monkeypatch):
    """Fairness modules size their networks from the DataModule (no ``input_dim`` in the
    config): ``instantiate`` gives them the DataModule before loading, so the weights fit."""
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "fair" / "vanilla_german.yaml")
    run = ["--trainer.max_epochs=1", "--model.init_args.probes=[]", "--torch_threads=1"]
    cli = cli_main(["fit", "--config", config, *run, f"--trainer.default_root_dir={tmp_path}"])
    last = Path(cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    x = cli.datamodule.test_set.x[:16]
    fitted = cli.model.eval().predict_proba(x)

    model, dm = instantiate(config, ["--model.init_args.probes=[]"], ckpt_path=last)
    assert model.hparams.input_dim == dm.input_dim == x.shape[1]
    assert model.consistency_columns == dm.consistency_columns
    assert torch.equal(model.eval().predict_proba(x), fitted)


def test_runs_started_at_once_get_their_own_version_directories(tmp_path):
    """Two runs built before either writes: each claims its own directory (both were version_0)."""
    config = str(tiny_config(tmp_path))
    first = LitRevCLI(args=["--config", config], run=False)
    second = LitRevCLI(args=["--config", config], run=False)
    dirs = {Path(first.trainer.logger.log_dir), Path(second.trainer.logger.log_dir)}
    assert len(dirs) == 2 and all(d.is_dir() for d in dirs)
    assert sorted(d.name for d in dirs) == ["version_0", "version_1"]
    assert first.config["trainer"]["logger"]["init_args"]["version"] is None  # as given


def test_claiming_a_version_directory_retries_past_one_taken_meanwhile(tmp_path, monkeypatch):
    real_mkdir = os.mkdir

    def racing_mkdir(path, *args):
        if Path(path).name == "version_0":  # another run created it after the listing
            real_mkdir(path, *args)
        return real_mkdir(path, *args)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    assert claim_version_dir(tmp_path / "runs") == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["version_0", "version_1"]


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0"}, True),
        ({"RANK": "3", "NODE_RANK": "0"}, False),
        ({"SLURM_PROCID": "1"}, False),
        ({"NODE_RANK": "1"}, False),  # Lightning's launcher on the second machine
        ({"NODE_RANK": "0", "LOCAL_RANK": "1"}, False),
        ({"NODE_RANK": "0", "LOCAL_RANK": "0"}, True),
    ],
)
def test_only_global_rank_zero_claims_a_run_directory(monkeypatch, tmp_path, env, zero):
    from lit_rev.config import claim_run_version, launched_as_rank_zero

    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launched_as_rank_zero() is zero
    logger = Namespace(init_args=Namespace(save_dir=str(tmp_path), name="run", version=None))
    claim_run_version(Namespace(logger=logger))
    assert sorted(p.name for p in (tmp_path / "run").glob("version_*")) == (
        ["version_0"] if zero else []
    )

"""Build what a lit_rev config describes, exactly as ``python -m lit_rev`` builds it.

:func:`instantiate` gives the model and the DataModule of a YAML (plus ``--key=value``
overrides), optionally with a checkpoint's weights, and builds no Trainer: the analyses, the
notebooks and the command modules of :mod:`lit_rev.commands` use it instead of the command
line. :func:`instantiate_with_trainer` adds the Trainer a ``python -m lit_rev`` run would get.

Both parse with :class:`ConfigBuilder`, the parser set-up that :mod:`lit_rev.cli` extends
(subclass mode for ``model`` and ``data``, ``seed_everything`` 0, TensorBoard logs, the
project's arguments and default callbacks), so a config means one thing everywhere. Importing
this module registers the classes of the slices under their short names (``DensityModule``,
``ImageDataModule``, ``Glow``, ...). Nothing in the slices imports it.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
)
from lightning.pytorch.cli import LightningCLI

import lit_rev.data
import lit_rev.density
import lit_rev.fair
import lit_rev.revnet
from lit_rev.callbacks import (
    AtomicCheckpointIO,
    FaultCheckpoint,
    LastCheckpoint,
    PredictionWriter,
    RunConfigSaver,
    StepBoundProgressBar,
    SummaryWithoutUnmeasuredFlops,
    quiet_third_party_noise,
)
from lit_rev.checkpoints import read_state_dict, state_dict_mismatch
from lit_rev.fit_checks import FitMismatch

# A class is resolvable by its short name once imported; the slices load their Lightning
# classes on first use, so every public name is looked up here.
for _package in (lit_rev.data, lit_rev.density, lit_rev.fair, lit_rev.revnet):
    for _name in _package.__all__:
        getattr(_package, _name)

DEFAULT_SEED = 0
DEFAULT_CHECKPOINT_EVERY_N_STEPS = 500

#: A path, or several applied in order like repeated ``--config`` arguments.
ConfigPaths = str | Path | Sequence[str | Path]


class ConfigError(ValueError):
    """A config or an override that does not parse; the message names the key and the value."""


def config_key(section: str, path: str) -> str:
    """The config key of argument ``path`` of the ``section``'s class, in subclass mode.

    ``config_key("model", "network.image_size")`` is
    ``model.init_args.network.init_args.image_size``: every object is a ``class_path`` with
    its ``init_args``.
    """
    return ".init_args.".join([section, *path.split(".")])


def fit_mismatch_message(error: FitMismatch) -> str:
    """``error``'s message with its settings named by their config keys (``model.init_args...``)."""
    return error.message(config_key("model", error.model_key), config_key("data", error.data_key))


class ConfigBuilder(LightningCLI):
    """The parser set-up of ``python -m lit_rev``: subclass mode, seed 0, TensorBoard logs.

    Besides Lightning's arguments it takes ``--torch_threads``, ``--checkpoint_every_n_steps``
    and ``--allow_untrained`` (see ``--help``), and adds the default callbacks of
    :mod:`lit_rev.callbacks` to the Trainer. :class:`lit_rev.cli.LitRevCLI` adds what only the
    command line does (exit codes, refusing to score an untrained model). Arguments as
    ``LightningCLI`` without the model and data classes.
    """

    def __init__(self, *args, **kwargs):
        quiet_third_party_noise()
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", DEFAULT_SEED)
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        super().__init__(LightningModule, LightningDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        """Add ``--torch_threads``, ``--checkpoint_every_n_steps`` and ``--allow_untrained``."""
        parser.add_argument(
            "--torch_threads",
            type=int | None,
            default=None,
            help="torch.set_num_threads for this run "
            "(small models on few cores are often fastest with 1)",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=DEFAULT_CHECKPOINT_EVERY_N_STEPS,
            help="fit: rewrite checkpoints/last.ckpt every N optimiser steps, besides epoch ends "
            "(0: epoch ends only). Ignored when the config lists its own ModelCheckpoint.",
        )
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="validate/test/predict: score the freshly initialised model when no --ckpt_path "
            "is given (refused otherwise: its numbers would mean nothing)",
        )

    def run_config(self):
        """The parsed config of this run: the subcommand's section, or the whole config."""
        return self.config.get(self.subcommand, self.config) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Set the thread count (``--torch_threads``) and claim the run's log directory."""
        threads = self.run_config().get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        self._claimed = claim_run_version(self.run_config().get("trainer"))

    def instantiate_classes(self) -> None:
        """Build the classes; the saved config keeps ``version`` as given (a re-run: a new one)."""
        super().instantiate_classes()
        if self._claimed is not None:
            self._claimed["version"] = None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, with a default callback of each kind the config does not list.

        The defaults are the rich progress bar and model summary of :mod:`lit_rev.callbacks`,
        :class:`LastCheckpoint` (``--checkpoint_every_n_steps``), :class:`FaultCheckpoint` and
        :class:`PredictionWriter`. A YAML that lists its own callback of one of these kinds
        keeps it instead of that default, and keeps the other defaults; ``enable_progress_bar``,
        ``enable_model_summary`` or ``enable_checkpointing`` set to false drop theirs.

        Args:
            kwargs: Trainer arguments that override the config's, as in ``LightningCLI``.
        """
        config = self.config_init.get(str(self.subcommand), self.config_init)
        trainer = {**(config.get("trainer") or {}), **kwargs}
        listed = trainer.get("callbacks") or []
        listed = list(listed) if isinstance(listed, list) else [listed]
        # Callbacks that a subclass adds as parser arguments (add_lightning_class_args) are
        # top-level entries of the config; Lightning adds them to the Trainer after these.
        as_arguments = [v for _, v in config.items(nested=False) if isinstance(v, Callback)]
        given = listed + as_arguments
        defaults: list[Callback] = []

        def has(kind: type) -> bool:
            return any(isinstance(c, kind) for c in given)

        if trainer.get("enable_progress_bar") is not False and not has(ProgressBar):
            defaults.append(StepBoundProgressBar())
        if trainer.get("enable_model_summary") is not False and not has(ModelSummary):
            defaults.append(SummaryWithoutUnmeasuredFlops())
            # else Lightning logs that it skips its own default summary
            kwargs["enable_model_summary"] = False
        if trainer.get("enable_checkpointing") is not False:
            if not has(ModelCheckpoint):
                every = self.run_config().get(
                    "checkpoint_every_n_steps", DEFAULT_CHECKPOINT_EVERY_N_STEPS
                )
                defaults.append(LastCheckpoint(every_n_steps=int(every)))
            if not has(FaultCheckpoint):
                defaults.append(FaultCheckpoint())
        if not has(BasePredictionWriter):
            defaults.append(PredictionWriter())
        kwargs["callbacks"] = listed + defaults
        built = super().instantiate_trainer(**kwargs)
        if type(built.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the config chose
            built.strategy.checkpoint_io = AtomicCheckpointIO()
        return built


def claim_version_dir(root: str | Path) -> int:
    """Create ``root/version_N`` for the next free ``N`` and return ``N``.

    ``os.mkdir`` either creates the directory or fails because it exists, so two runs started
    at once never get the same one: the loser takes the next number.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [
        int(d.name[len("version_") :])
        for d in root.iterdir()
        if d.is_dir() and d.name.startswith("version_") and d.name[len("version_") :].isdigit()
    ]
    version = max(taken, default=-1) + 1
    while True:
        try:
            os.mkdir(root / f"version_{version}")
            return version
        except FileExistsError:
            version += 1


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher says, before any process group.

    torchrun sets ``RANK``, SLURM ``SLURM_PROCID``; Lightning's own launcher on several machines
    sets ``NODE_RANK`` on each and ``LOCAL_RANK`` on the processes it starts.
    """
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name):
            return os.environ[name] == "0"
    return os.environ.get("NODE_RANK", "0") in ("", "0") and os.environ.get("LOCAL_RANK", "0") in (
        "",
        "0",
    )


def claim_run_version(trainer: Any) -> Any:
    """Give the config's logger (``save_dir``/``name``, no ``version``) a directory of its own.

    Loggers pick ``version_N`` by listing the directory and create it only when they first
    write, so two runs started at once took the same one. Here the directory is claimed with
    :func:`claim_version_dir` before the logger is built, and the logger is given its number.
    A process of another rank of the same run (:func:`launched_as_rank_zero` is false) claims
    nothing: it takes the newest directory, the one its rank 0 claims (it writes no logs).

    Returns:
        The logger's ``init_args`` given a version, else ``None`` (no such logger, a version
        given, or a ``fast_dev_run``, which logs nothing).
    """
    logger = trainer.get("logger") if trainer is not None else None
    arguments = getattr(logger, "init_args", None)
    if arguments is None or arguments.get("version") is not None or trainer.get("fast_dev_run"):
        return None
    save_dir, name = arguments.get("save_dir"), arguments.get("name")
    if save_dir is None or "version" not in arguments:
        return None
    root = Path(save_dir) / (name or "")
    if not launched_as_rank_zero():
        taken = [d for d in root.glob("version_*") if d.name[len("version_") :].isdigit()]
        if not taken:
            return None
        arguments["version"] = max(int(d.name[len("version_") :]) for d in taken)
        return arguments
    arguments["version"] = claim_version_dir(root)
    return arguments


def trainer_defaults() -> dict:
    """TensorBoard logs under ``logs/lit_rev/version_N``."""
    return {
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "logs", "name": "lit_rev"},
        },
    }


class _ModelAndData(ConfigBuilder):
    """:class:`ConfigBuilder` that instantiates the model and the DataModule only.

    The Trainer's logger and callbacks are parsed (and checked) but never built.
    """

    def before_instantiate_classes(self) -> None:
        """Set the thread count; no run directory (no logger is built here)."""
        self._claimed = None
        threads = self.run_config().get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

    def instantiate_classes(self) -> None:
        """Build ``model`` and ``data``; ``trainer`` stays ``None``."""
        if self.config.get("optimizer") or self.config.get("lr_scheduler"):
            raise ConfigError(
                "instantiate does not build the top-level optimizer/lr_scheduler of a config "
                f"(given: optimizer={self.config.get('optimizer')}, "
                f"lr_scheduler={self.config.get('lr_scheduler')}); "
                "give the model's own optimizer arguments instead (model.init_args)"
            )
        wanted = self.config.clone()
        wanted.trainer.logger = False
        wanted.trainer.callbacks = None
        self.config_init = self.parser.instantiate_classes(wanted)
        self.model = self.config_init.get("model")
        self.datamodule = self.config_init.get("data")
        self.trainer = None


def _arguments(config: ConfigPaths, overrides: Sequence[str]) -> list[str]:
    paths = [config] if isinstance(config, str | Path) else list(config)
    if not paths:
        raise ValueError("config: give at least one YAML path, got an empty sequence")
    if isinstance(overrides, str):
        raise TypeError(
            f"overrides must be a sequence of strings such as ['--data.init_args.batch_size=8'], "
            f"got the single string {overrides!r}: wrap it in a list"
        )
    arguments = []
    for path in paths:
        arguments += ["--config", str(path)]
    return arguments + list(overrides)


def _described(config: ConfigPaths, overrides: Sequence[str]) -> str:
    paths = [config] if isinstance(config, str | Path) else list(config)
    given = f" with overrides {' '.join(overrides)}" if overrides else ""
    return f"the config {' + '.join(map(str, paths))}{given}"


def _build(builder: type[ConfigBuilder], config: ConfigPaths, overrides: Sequence[str]):
    arguments = _arguments(config, overrides)
    try:
        with warnings.catch_warnings():
            # Lightning warns when ``args`` is given while sys.argv holds arguments (as in any
            # command module); here the arguments are meant to be the ones given.
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            return builder(args=arguments, run=False, parser_kwargs={"exit_on_error": False})
    except argparse.ArgumentError as error:
        raise ConfigError(
            f"{_described(config, overrides)} does not parse: {error}".rstrip()
        ) from None


def instantiate(
    config: ConfigPaths,
    overrides: Sequence[str] = (),
    ckpt_path: str | Path | None = None,
) -> tuple[LightningModule, LightningDataModule]:
    """The model and the DataModule of a config, as ``python -m lit_rev`` builds them.

    Parsed like ``python -m lit_rev fit --config ...`` (same parser, defaults and seeding:
    ``seed_everything`` seeds the global random state, so an untrained model has the same
    weights as the command line's), without building a Trainer or a logger. A model that takes
    settings from the DataModule a Trainer would attach (``DensityModule``'s ``n_bits``, a
    fairness module's input width) is given ``datamodule`` through its public
    ``use_datamodule`` before any checkpoint is loaded, so it scores as in a run.

    Args:
        config: a YAML path, or several applied in order like repeated ``--config``.
        overrides: command-line style arguments applied after the files, e.g.
            ``["--model.init_args.lr=0.01", "--data.init_args.batch_size=8"]``.
        ckpt_path: a checkpoint (Lightning's, or a bare state dict) whose weights are loaded
            strictly, read with ``torch.load(weights_only=True)`` so that it cannot run code.

    Returns:
        ``(model, datamodule)``; the model is in training mode, as built.

    Raises:
        ConfigError: a key or value that does not parse (the message is the parser's, naming
            the key), or a top-level ``optimizer``/``lr_scheduler`` (not built here).
        ValueError: a checkpoint that does not fit the config's model (naming the checkpoint,
            the config and the keys that disagree), or that is not a safe torch checkpoint.
        FileNotFoundError: no checkpoint at ``ckpt_path``.
    """
    built = _build(_ModelAndData, config, overrides)
    model, datamodule = built.model, built.datamodule
    # before the weights: a fairness module builds its networks from the DataModule's shapes
    use_datamodule = getattr(model, "use_datamodule", None)
    if datamodule is not None and callable(use_datamodule):
        use_datamodule(datamodule)
    if ckpt_path is not None:
        state = read_state_dict(ckpt_path, "instantiate")
        mismatch = state_dict_mismatch(model, state)
        if mismatch:
            raise ValueError(
                f"the checkpoint {ckpt_path} does not fit the model of "
                f"{_described(config, overrides)}: {mismatch}. Pass the config (and overrides) "
                "the checkpoint was trained with, e.g. the config.yaml in its run directory"
            )
        model.load_state_dict(state, strict=True)
    return model, datamodule


def instantiate_with_trainer(
    config: ConfigPaths, overrides: Sequence[str] = ()
) -> tuple[Trainer, LightningModule, LightningDataModule]:
    """The Trainer, model and DataModule of a config, as ``python -m lit_rev fit`` builds them.

    With the same logger and default callbacks; the caller runs ``trainer.fit`` / ``test``.

    Args:
        config: a YAML path, or several applied in order like repeated ``--config``.
        overrides: command-line style arguments applied after the files.

    Raises:
        ConfigError: a key or value that does not parse (the message names the key).
    """
    built = _build(ConfigBuilder, config, overrides)
    return built.trainer, built.model, built.datamodule

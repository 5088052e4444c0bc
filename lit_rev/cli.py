"""The one command line of lit_rev: ``python -m lit_rev fit|validate|test|predict --config x.yaml``.

LightningCLI in subclass mode: ``model`` may be any ``LightningModule`` and ``data`` any
``LightningDataModule``, named in YAML by ``class_path``. Importing the paper subpackages
below registers the project's own classes, so their short names (``DensityModule``,
``ImageDataModule``, ``Glow``, ...) resolve without the module path.

Every run gets the callbacks of :mod:`lit_rev.callbacks` by default (a YAML that lists its
own callback of one of these kinds replaces that default): ``last.ckpt`` every
``--checkpoint_every_n_steps`` steps and at epoch ends, a checkpoint when a signal or an
exception stops ``fit`` (SIGTERM exits 143), a CSV of per-image predictions for ``predict``,
and the run's config saved without overwriting files of other runs. ``validate``, ``test`` and
``predict`` refuse to score the untrained model the config builds unless given
``--ckpt_path`` or ``--allow_untrained true``.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
)
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

# Imported for their side effect: the classes become resolvable by short name.
import lit_rev.data
import lit_rev.density
import lit_rev.fair
import lit_rev.revnet  # noqa: F401
from lit_rev.callbacks import (
    FaultCheckpoint,
    LastCheckpoint,
    PredictionWriter,
    RunConfigSaver,
    StepBoundProgressBar,
    SummaryWithoutUnmeasuredFlops,
    quiet_third_party_noise,
    sigterm_exits_nonzero,
)

DEFAULT_SEED = 0
DEFAULT_CHECKPOINT_EVERY_N_STEPS = 500
EVALUATING = ("validate", "test", "predict")


class LitRevCLI(LightningCLI):
    """``LightningCLI`` with this project's defaults: subclass mode, seed 0, TensorBoard logs.

    Besides Lightning's arguments it takes ``--torch_threads``, ``--checkpoint_every_n_steps``
    and ``--allow_untrained`` (see ``--help``), adds the default callbacks of
    :mod:`lit_rev.callbacks` to the Trainer, and exits nonzero where a run failed in a way
    Lightning would exit 0 on: a SIGTERM stop (143) or an OOD evaluation with non-finite
    scores (1). Arguments as ``LightningCLI`` without the model and data classes.
    """

    def __init__(self, *args, **kwargs):
        quiet_third_party_noise()
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", DEFAULT_SEED)
        kwargs.setdefault("save_config_callback", RunConfigSaver)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        # LightningCLI runs the subcommand inside __init__ (unless run=False).
        with sigterm_exits_nonzero():  # Lightning's SIGTERM stop would otherwise exit 0
            super().__init__(LightningModule, LightningDataModule, *args, **kwargs)
        self._exit_if_the_evaluation_failed()

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

    def _subcommand_config(self):
        return self.config.get(self.subcommand, self.config) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Set the thread count, and refuse to score an untrained model (see ``--help``)."""
        config = self._subcommand_config()
        threads = config.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        no_file = str(config.get("ckpt_path") or "") in ("", "last", "best")
        if self.subcommand in EVALUATING and no_file:
            self._refuse_untrained(config)

    def _refuse_untrained(self, config) -> None:
        """Exit 2 where an evaluation would score random weights, unless asked for.

        ``test`` without ``--ckpt_path`` scores random weights and prints the paper's table as
        if it were a result: refused unless asked for (or a ``fast_dev_run`` smoke test).

        ``--ckpt_path last`` is refused too: in a new process Lightning looks for ``last.ckpt`` in
        this run's own, new checkpoint directory, finds none, warns and scores random weights.
        """
        given = config.get("ckpt_path")
        how = "without --ckpt_path"
        if given:
            how = f"with --ckpt_path={given} (no previous fit in this process)"
        what = (
            f"`{self.subcommand}` {how} scores the untrained model that the config builds "
            "(random weights): its numbers mean nothing"
        )
        if config.get("allow_untrained"):
            rank_zero_warn(f"{what}; going ahead because --allow_untrained is set")
        elif (config.get("trainer") or {}).get("fast_dev_run"):
            rank_zero_warn(f"{what}; going ahead for this fast_dev_run smoke test")
        else:
            print(
                f"error: {what}. Pass the file: --ckpt_path=<run dir>/checkpoints/last.ckpt "
                "(written by `fit`), or --allow_untrained=true to score random weights "
                "on purpose.",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)

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
                every = self._subcommand_config().get(
                    "checkpoint_every_n_steps", DEFAULT_CHECKPOINT_EVERY_N_STEPS
                )
                defaults.append(LastCheckpoint(every_n_steps=int(every)))
            if not has(FaultCheckpoint):
                defaults.append(FaultCheckpoint())
        if not has(BasePredictionWriter):
            defaults.append(PredictionWriter())
        kwargs["callbacks"] = listed + defaults
        return super().instantiate_trainer(**kwargs)

    def _exit_if_the_evaluation_failed(self) -> None:
        """Exit 1 where a density evaluation found non-finite scores.

        The report then says "THE RUN FAILED"; a script or a scheduler that reads only the exit
        code must see it too.
        """
        failed = getattr(getattr(self, "model", None), "ood_failures", None)
        if failed:
            print(
                f"error: the OOD evaluation failed: {'; '.join(failed)}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)


def trainer_defaults() -> dict:
    """TensorBoard logs under ``logs/lit_rev/version_N``."""
    return {
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "logs", "name": "lit_rev"},
        },
    }


def main(args: list[str] | None = None) -> LitRevCLI:
    """Run ``python -m lit_rev`` with ``args`` (default: ``sys.argv``); returns the CLI."""
    return LitRevCLI(args=args)


if __name__ == "__main__":
    main()

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
from typing import Optional

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
        parser.add_argument(
            "--torch_threads",
            type=Optional[int],
            default=None,
            help="torch.set_num_threads for this run (small models on few cores are often fastest with 1)",
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
        config = self._subcommand_config()
        threads = config.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))
        no_file = str(config.get("ckpt_path") or "") in ("", "last", "best")
        if self.subcommand in EVALUATING and no_file:
            self._refuse_untrained(config)

    def _refuse_untrained(self, config) -> None:
        """``test`` without ``--ckpt_path`` scores random weights and prints the paper's table as
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

    def _instantiate_trainer(self, config: dict, callbacks: list[Callback]) -> Trainer:
        # Default callbacks are added only where the config has none of that kind, so a YAML
        # that lists its own callbacks keeps the rich bar and `last.ckpt` unless it replaces them.
        config = dict(config)
        given = list(config.get("callbacks") or []) + list(callbacks)
        has = lambda kind: any(isinstance(c, kind) for c in given)  # noqa: E731
        if config.get("enable_progress_bar") is not False and not has(ProgressBar):
            callbacks.append(StepBoundProgressBar())
        if config.get("enable_model_summary") is not False and not has(ModelSummary):
            callbacks.append(SummaryWithoutUnmeasuredFlops())
            # else Lightning logs that it skips its own default summary
            config["enable_model_summary"] = False
        if config.get("enable_checkpointing") is not False:
            if not has(ModelCheckpoint):
                every = self._subcommand_config().get(
                    "checkpoint_every_n_steps", DEFAULT_CHECKPOINT_EVERY_N_STEPS
                )
                callbacks.append(LastCheckpoint(every_n_steps=int(every)))
            if not has(FaultCheckpoint):
                callbacks.append(FaultCheckpoint())
        if not has(BasePredictionWriter):
            callbacks.append(PredictionWriter())
        return super()._instantiate_trainer(config, callbacks)

    def _run_subcommand(self, subcommand: str) -> None:
        with sigterm_exits_nonzero():  # Lightning's SIGTERM stop would otherwise exit 0
            super()._run_subcommand(subcommand)
        # A density evaluation with non-finite scores printed "THE RUN FAILED"; a script or a
        # scheduler that reads only the exit code must see it too.
        failed = getattr(self.model, "ood_failures", None)
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
    return LitRevCLI(args=args)


if __name__ == "__main__":
    main()

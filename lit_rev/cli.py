"""The one command line of lit_rev: ``python -m lit_rev fit|validate|test|predict --config x.yaml``.

LightningCLI in subclass mode: ``model`` may be any ``LightningModule`` and ``data`` any
``LightningDataModule``, named in YAML by ``class_path``. Importing the paper subpackages
below registers the project's own classes, so their short names (``DensityModule``,
``ImageDataModule``, ``Glow``, ...) resolve without the module path.
"""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI

# Imported for their side effect: the classes become resolvable by short name.
import lit_rev.data  # noqa: F401
import lit_rev.density  # noqa: F401
import lit_rev.fair  # noqa: F401
import lit_rev.revnet  # noqa: F401

DEFAULT_SEED = 0


class LitRevCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", DEFAULT_SEED)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        super().__init__(LightningModule, LightningDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--torch_threads", type=Optional[int], default=None,
            help="torch.set_num_threads for this run (small models on few cores are often fastest with 1)",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        threads = config.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

    def _instantiate_trainer(self, config: dict, callbacks: list[Callback]) -> Trainer:
        # Default callbacks are added only where the config has none of that kind, so a YAML
        # that lists its own callbacks keeps the rich bar and `last.ckpt` unless it replaces them.
        given = list(config.get("callbacks") or []) + list(callbacks)
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in given):
            callbacks.append(RichProgressBar())
        if config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in given):
            callbacks.append(ModelCheckpoint(save_last=True))
        return super()._instantiate_trainer(config, callbacks)


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

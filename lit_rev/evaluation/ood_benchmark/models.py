"""The models of a benchmark entry: their configs, checkpoints or training budgets, and checks.

A model's config path (``config:`` of an entry) is looked up in this order, and the first file
found is used (:func:`resolve_config`):

1. as given: an absolute path, or a path relative to the current directory;
2. relative to the directory of the benchmark YAML (each ``--config``, in the order given),
   then relative to each of that directory's ancestors, nearest first.

So ``configs/density/quick_glow_mnist5k.yaml`` in ``<tree>/configs/ood/x.yaml`` finds
``<tree>/configs/density/quick_glow_mnist5k.yaml`` from any current directory, and a copy of
the ``configs/`` tree works wherever it lies. The installed package's own location is never
searched: configs are files of the user's, not of the package.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule

from lit_rev.config import ConfigError, instantiate, instantiate_with_trainer
from lit_rev.data.files import sha256
from lit_rev.density import DensityModule, OODEvaluation


class BenchmarkError(ValueError):
    """A benchmark config that cannot run as given; the message names the key and the fix."""


def resolve_config(path: str, search_dirs: Sequence[Path] = ()) -> str:
    """Where the config ``path`` of a detector is (see the module docstring for the rule).

    Args:
        path: the path as written in the benchmark YAML.
        search_dirs: the benchmark YAMLs' directories; each and its ancestors are searched
            after the current directory.

    Returns:
        ``path`` unchanged where it exists as given, else the first match below a search
        directory.

    Raises:
        BenchmarkError: no such file, naming the places searched.
    """
    if Path(path).is_file():
        return path
    if not Path(path).is_absolute():
        for directory in search_dirs:
            directory = Path(directory).resolve()
            for base in (directory, *directory.parents):
                if (base / path).is_file():
                    return str(base / path)
    places = [str(Path.cwd()), *(f"{Path(d).resolve()} (and its parents)" for d in search_dirs)]
    raise BenchmarkError(
        f"config {path!r}: no such file relative to {' or '.join(places)}; give a path "
        "relative to the current directory or to the benchmark YAML's directory (or one of "
        "its parents), or an absolute path"
    )


#: The SHA-256 of a file, hex: the score cache keys on the contents of every file a model reads.
file_sha256 = sha256


def _named_files(value: Any) -> list[str]:
    """Every string in ``value`` (nested lists and dicts) that names an existing file."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in _named_files(v)]
    if isinstance(value, list):
        return [f for v in value for f in _named_files(v)]
    if isinstance(value, str) and 0 < len(value) < 4096:
        try:
            return [value] if Path(value).is_file() else []
        except OSError:  # not a possible path
            return []
    return []


def budget_overrides(max_steps: int | None) -> list[str]:
    """Overrides that make a training run stop after ``max_steps`` optimiser steps (if given)."""
    if max_steps is None:
        return []
    return [
        f"--trainer.max_steps={max_steps}",
        "--trainer.max_epochs=-1",
        "--trainer.max_time=null",
    ]


class ModelSpec:
    """One model of a detector: its config(s), overrides and checkpoint (or training budget).

    Args:
        label: names the model in messages, logs and ``--ckpt_paths``.
        config: a lit_rev YAML, or several applied in order.
        overrides: ``--key=value`` arguments applied after the config(s).
        ckpt_path: the model's weights; ``None`` trains it from nothing.
        max_steps: the training budget in optimiser steps (``None``: the config's own).
    """

    def __init__(
        self,
        label: str,
        config: str | Sequence[str],
        overrides: Sequence[str] = (),
        ckpt_path: str | None = None,
        max_steps: int | None = None,
    ):
        self.label = label
        self.configs = [config] if isinstance(config, str) else list(config)
        if max_steps is not None and (isinstance(max_steps, bool) or max_steps < 1):
            raise BenchmarkError(
                f"detector {label}: max_steps = {max_steps!r}; give a number of optimiser steps "
                ">= 1, or leave it out for the config's own budget"
            )
        self.overrides = list(overrides) + budget_overrides(max_steps)
        self.ckpt_path = ckpt_path
        self._checked: tuple[str, Any] | None = None

    def resolve(self, search_dirs: Sequence[Path] = ()) -> None:
        """Find each config by :func:`resolve_config`; a missing one names this model."""
        try:
            self.configs = [resolve_config(c, search_dirs) for c in self.configs]
        except BenchmarkError as error:
            raise BenchmarkError(f"detector {self.label}: {error}") from None

    def files(self) -> list[str]:
        """Every file this model is built from, existing ones only.

        Its configs, the files they and the overrides name (e.g. a likelihood ratio's
        background checkpoint), and its checkpoint.
        """
        found = list(self.configs)
        for config in self.configs:
            # an unreadable config is the config parser's to report
            with contextlib.suppress(OSError, yaml.YAMLError):
                found += _named_files(yaml.safe_load(Path(config).read_text()))
        for override in self.overrides:
            value = override.partition("=")[2]
            try:
                found += _named_files(yaml.safe_load(value))
            except yaml.YAMLError:
                found += _named_files(value)
        if self.ckpt_path is not None:
            found.append(self.ckpt_path)
        return [f for f in dict.fromkeys(found) if Path(f).is_file()]

    def describe(self) -> dict:
        """The settings that determine the model (for the report and the scores cache)."""
        return {
            "config": self.configs,
            "overrides": self.overrides,
            "ckpt_path": self.ckpt_path,
        }

    def check(self, data: LightningDataModule) -> Any:
        """Build the model (without training it) and stop naming the key where it does not fit.

        Checks that its config parses, that its checkpoint (if any) loads strictly, and
        :func:`check_fits` against the benchmark's ``data``. Returns the model.
        """
        model, model_data = self._instantiate(self.ckpt_path)
        check_fits(self.label, self.configs, model, model_data, data)
        # a loaded checkpoint is what build() would load again: keep it (and its checked path)
        self._checked = (self.ckpt_path, model) if self.ckpt_path is not None else None
        return model

    def _instantiate(self, ckpt_path: str | None, extra: Sequence[str] = ()):
        try:
            return instantiate(self.configs, self.overrides + list(extra), ckpt_path)
        except ConfigError as error:
            raise BenchmarkError(f"detector {self.label}: {error}") from None
        except (FileNotFoundError, ValueError) as error:
            if ckpt_path is None:
                raise
            # a missing, unreadable or mismatched checkpoint (instantiate names which)
            raise BenchmarkError(
                f"detector {self.label}: checkpoint {ckpt_path}: {error}. Give this model's "
                f"checkpoint with --ckpt_paths.{self.label} PATH (or ckpt_path in the "
                "benchmark YAML), or none to train it from nothing"
            ) from None

    def build(
        self, work_dir: Path, train_overrides: Sequence[str], progress: bool
    ) -> tuple[Any, dict]:
        """The model in eval mode: loaded from ``ckpt_path``, or trained from nothing.

        Training writes its TensorBoard logs and checkpoints under ``work_dir/<label>``; the
        config's own :class:`~lit_rev.density.OODEvaluation` callback is dropped (the benchmark
        scores the model on its own data). Returns the model and what was done (steps, time).
        """
        start = time.perf_counter()
        checked, self._checked = self._checked, None
        if self.ckpt_path is not None:
            if checked is not None and checked[0] == self.ckpt_path:
                model = checked[1]
            else:
                model, _ = self._instantiate(self.ckpt_path)
            info = {"weights": f"checkpoint {self.ckpt_path}"}
        else:
            logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(work_dir), "name": self.label, "version": "train"},
            }
            extra = [f"--trainer.logger={json.dumps(logger)}"]
            if not progress:
                extra.append("--trainer.enable_progress_bar=false")
            try:
                trainer, model, model_data = instantiate_with_trainer(
                    self.configs, self.overrides + extra + list(train_overrides)
                )
            except ConfigError as error:
                raise BenchmarkError(f"detector {self.label}: {error}") from None
            trainer.callbacks[:] = [
                c for c in trainer.callbacks if not isinstance(c, OODEvaluation)
            ]
            trainer.fit(model, datamodule=model_data)
            info = {
                "weights": f"trained from nothing, {trainer.global_step} steps",
                "train_log": str(Path(trainer.log_dir or work_dir)),
            }
        info["build_seconds"] = round(time.perf_counter() - start, 1)
        return model.eval(), info


def _shape_and_bits(dm: LightningDataModule) -> tuple[Any, Any, Any]:
    source = getattr(dm, "source", None)
    return (
        getattr(source, "name", None),
        tuple(dm.shape) if hasattr(dm, "shape") else None,
        getattr(dm, "n_bits", None),
    )


def check_fits(
    label: str,
    configs: Sequence[str],
    model: Any,
    model_data: LightningDataModule | None,
    data: LightningDataModule,
) -> None:
    """Stop where a model cannot be scored on the benchmark's ``data``.

    The model's training set (its config's in-distribution source) must be the benchmark's
    in-distribution set, and its images the same shape ``(C, H, W)`` and ``n_bits``; a density
    model's network is checked by :meth:`DensityModule.check_fit`, a classifier's ``n_bits``
    hyper-parameter against the data's.

    Raises:
        BenchmarkError: naming the detector, its config, the values that disagree and the fix.
    """
    where = f"detector {label} ({' + '.join(configs)})"
    name, shape, bits = _shape_and_bits(data)
    if model_data is not None:
        model_name, model_shape, model_bits = _shape_and_bits(model_data)
        if model_name is not None and name is not None and model_name != name:
            raise BenchmarkError(
                f"{where} is trained on {model_name!r} (data.init_args.dataset of its config) but "
                f"the benchmark's in-distribution set is {name!r}: give a config trained on "
                f"{name!r}, or change the benchmark's data.init_args.dataset"
            )
        if model_shape is not None and shape is not None and model_shape != shape:
            raise BenchmarkError(
                f"{where} takes images of shape {model_shape} but the benchmark's data are "
                f"{shape}: set data.init_args.channels/image_size of the benchmark (or of the "
                "model config) so that they agree"
            )
        if model_bits is not None and bits is not None and model_bits != bits:
            raise BenchmarkError(
                f"{where} is trained on {model_bits}-bit images (data.init_args.n_bits of its "
                f"config) but the benchmark's data have n_bits = {bits}: make them agree"
            )
    if isinstance(model, DensityModule):
        try:
            model.check_fit(data)
        except ValueError as error:
            raise BenchmarkError(
                f"{where} does not fit the benchmark's data: {error} (in the model config or "
                "the benchmark's data block)"
            ) from None
    hparams = getattr(model, "hparams", {})
    model_bits = hparams.get("n_bits") if hasattr(hparams, "get") else None
    if model_bits is not None and bits is not None and int(model_bits) != int(bits):
        raise BenchmarkError(
            f"{where} has model.init_args.n_bits = {model_bits} but the benchmark's data have "
            f"n_bits = {bits}: make them agree"
        )

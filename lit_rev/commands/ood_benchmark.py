"""One OOD benchmark: likelihood scores beside classifier detectors, in the field's metrics.

    python -m lit_rev.commands.ood_benchmark --config configs/ood/mnist5k_embedded.yaml \
        [--out DIR] [--torch_threads N] [--max_images N] [--ckpt_paths.NAME PATH] [--help]

The YAML names one in-distribution DataModule with its OOD sets (``data:``, the block of any
lit_rev config, e.g. an ``ImageDataModule`` with ``ood:``) and a list of ``detectors:``, each
one of

* :class:`DensityDetector`: a density model (a ``DensityModule`` config) and the scores to
  report: raw bits/dim (``bpd``), ``typicality``, input ``complexity``, ... (the scores of
  :mod:`lit_rev.density.scores`);
* :class:`ClassifierDetectors`: a classifier (an ``ImageClassifier`` config) and the post-hoc
  detectors of :mod:`lit_rev.ood.detectors` to run on it (``msp``, ``max_logit``, ``energy``,
  ``odin``, ``mahalanobis``, ``knn``);
* :class:`WAICEnsemble`: K density models (K configs, or one config and K seeds) scored by the
  WAIC of Choi et al. 2018, :func:`lit_rev.ood.ensemble.waic_score`.

Each model comes from its own config, with a checkpoint (``ckpt_path``, or
``--ckpt_paths.NAME PATH`` on the command line) or trained from nothing by
:func:`lit_rev.config.instantiate_with_trainer` at the config's budget (``max_steps`` and
``overrides`` change it). The detectors' configs only say how to build and train the model:
every detector is evaluated on the benchmark's own ``data:`` (the same in-distribution test
images and the same OOD sets), and a model whose training set, image shape or ``n_bits`` does
not fit those data stops the command before anything is trained.

It prints and writes one table: detector x OOD set x {AUROC, AUPR-in, AUPR-out, FPR@95}
(:func:`lit_rev.ood.ood_metrics`; OOD is the positive class, higher score = more OOD), plus
the mean over the OOD sets per detector, to ``<out>/ood_benchmark.{json,csv,md}``; a summary
(AUROC / FPR@95 per set, and whether the detector reaches AUROC >= 0.95 and FPR@95 <= 0.2 on
every set) to ``<out>/ood_benchmark_summary.{json,csv,md}``; heat maps of AUROC and FPR@95
(``heatmap_auroc.png``, ``heatmap_fpr_at_95_tpr.png``), also logged to TensorBoard under
``<out>/tensorboard``. A score with a NaN or infinite value gives no metric: its cells are
missing (``null`` in the JSON) with the reason in ``missing``, the other cells stand, and the
command exits 1 after writing everything. Each detector's per-image scores are saved to
``<out>/scores/<name>.pt`` as soon as it finishes, and the tables are rewritten: a rerun with
the same ``--out`` reuses the scores of every detector whose settings are unchanged (``--fresh
true`` recomputes them).
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from lightning.pytorch import LightningDataModule, seed_everything
from torch.utils.data import DataLoader

from lit_rev.config import ConfigError, instantiate, instantiate_with_trainer
from lit_rev.density import DensityModule, InputComplexity, OODEvaluation, Typicality
from lit_rev.density.ood import checked_metrics
from lit_rev.density.scores import LikelihoodRatio, OODScore
from lit_rev.ood import OOD_METRICS
from lit_rev.ood.detectors import DETECTORS, DetectorName, make_detector
from lit_rev.ood.ensemble import waic_score
from lit_rev.report import format_table, save_figure, write_report

REPO = Path(__file__).resolve().parents[2]
STEM = "ood_benchmark"
#: The label of each detector's row of means over the OOD sets.
MEAN = "mean"
#: A detector "reaches the target" where, on every OOD set, AUROC >= this ...
TARGET_AUROC = 0.95
#: ... and FPR at 95% TPR <= this (issue 10's targets).
TARGET_FPR = 0.2

#: The per-image scores a density model gives without any OOD score object (bits/dim; flows
#: also give its density and volume parts).
NATIVE_DENSITY_SCORES = ("bpd", "prior_bpd", "logdet_bpd")
#: The density scores a :class:`DensityDetector` reports (the parser lists them in ``--help``).
DensityScore = Literal[
    "bpd", "prior_bpd", "logdet_bpd", "typicality", "complexity", "likelihood_ratio"
]
#: The OOD scores of :mod:`lit_rev.density.scores` by the per-image score each gives, with a
#: default instance where one needs no settings (a likelihood ratio needs its background
#: model's checkpoint: list it in the model config's ``ood_scores``).
DENSITY_SCORERS: dict[str, tuple[type[OODScore], Any]] = {
    "typicality": (Typicality, Typicality),
    "complexity": (InputComplexity, InputComplexity),
    "likelihood_ratio": (LikelihoodRatio, None),
}
#: Every classifier detector, the default of :class:`ClassifierDetectors`.
CLASSIFIER_DETECTORS = tuple(DETECTORS)

#: Scores of one detector: ``{label: {set name: (N,) tensor}}``, label ``<name>/<score>``.
Scores = dict[str, dict[str, torch.Tensor]]


class BenchmarkError(ValueError):
    """A benchmark config that cannot run as given; the message names the key and the fix."""


# ----------------------------------------------------------------------------------------------
# Models: from a checkpoint or trained from nothing
# ----------------------------------------------------------------------------------------------
def resolve_config(path: str) -> str:
    """``path`` as given when it exists, else relative to the repository (``configs/...``)."""
    if Path(path).is_file() or not (REPO / path).is_file():
        return path
    return str(REPO / path)


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
        configs = [config] if isinstance(config, str) else list(config)
        self.label = label
        self.configs = [resolve_config(c) for c in configs]
        self.overrides = list(overrides) + budget_overrides(max_steps)
        self.ckpt_path = ckpt_path
        self._checked: tuple[str, Any] | None = None

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


# ----------------------------------------------------------------------------------------------
# The benchmark's data, as every detector sees it
# ----------------------------------------------------------------------------------------------
class OnDevice:
    """A loader whose batches ``(x, y)`` come on ``device``; iterable any number of times."""

    def __init__(self, loader: Iterable, device: torch.device):
        self.loader = loader
        self.device = device

    def __iter__(self) -> Iterator:
        for x, y in self.loader:
            yield x.to(self.device), y.to(self.device)

    def __len__(self) -> int:
        return len(self.loader)


class BenchmarkData:
    """The benchmark's DataModule, set up: test sets (in-distribution first) and training split.

    Args:
        datamodule: an ``ImageDataModule`` (or any DataModule with ``test_names``).
        max_images: cap on every test set (a seeded subset, as the DataModule's own
            ``max_test``); the training split detectors fit on is the DataModule's own (its
            ``max_train`` caps it).
    """

    def __init__(self, datamodule: LightningDataModule, max_images: int | None = None):
        if max_images is not None:
            own = getattr(datamodule, "max_test", None)
            datamodule.max_test = max_images if own is None else min(own, max_images)
        self.datamodule = datamodule
        datamodule.setup("fit")
        datamodule.setup("test")
        self.names: list[str] = list(datamodule.test_names)
        if len(self.names) < 2:
            raise BenchmarkError(
                f"data: the benchmark needs OOD sets (data.init_args.ood), got only {self.names}"
            )
        self.in_name = self.names[0]
        self.ood_names = self.names[1:]
        self.test_loaders = datamodule.test_dataloader()
        self.batch_size = getattr(datamodule, "test_batch_size", None) or 64

    def describe(self) -> dict:
        """Set sizes, for the report's metadata."""
        return {
            name: len(loader.dataset)
            for name, loader in zip(self.names, self.test_loaders, strict=True)
        }

    def train_loader(self) -> DataLoader:
        """The training split in order (every image, no shuffling): what detectors fit on."""
        dm = self.datamodule
        return DataLoader(dm.train_set, batch_size=self.batch_size, shuffle=False)

    def reference_loader(self) -> Iterable:
        """Held-out in-distribution data (the validation split, else the training split)."""
        loader = self.datamodule.val_dataloader()
        return loader if loader else self.train_loader()

    def batches(self, progress: bool, what: str) -> Iterator[tuple[str, torch.Tensor]]:
        """``(set name, images)`` over every test set, with a progress bar per set."""
        from rich.progress import track

        for name, loader in zip(self.names, self.test_loaders, strict=True):
            for x, _ in track(
                loader, description=f"{what}: {name}", transient=True, disable=not progress
            ):
                yield name, x


def _cat(parts: dict[str, dict[str, list[torch.Tensor]]]) -> Scores:
    return {
        label: {name: torch.cat(values).detach().double().cpu() for name, values in sets.items()}
        for label, sets in parts.items()
    }


# ----------------------------------------------------------------------------------------------
# The detectors of a benchmark config
# ----------------------------------------------------------------------------------------------
class BenchmarkDetector:
    """A model (or several) and the scores it adds to the table, one per label.

    Subclasses give :meth:`models`, :meth:`labels` and :meth:`score`.

    Args:
        name: names the detector's rows (``<name>/<score>``), its files and ``--ckpt_paths``.
    """

    def __init__(self, name: str):
        if not name or "/" in name or name != name.strip():
            raise BenchmarkError(
                f"detectors: name {name!r} must be non-empty, without '/' or surrounding spaces"
            )
        self.name = name

    def models(self) -> list[ModelSpec]:
        """The models this detector needs, each with its label for ``--ckpt_paths``."""
        raise NotImplementedError

    def labels(self) -> list[str]:
        """The table rows this detector gives, in order."""
        raise NotImplementedError

    def check(self, data: LightningDataModule) -> None:
        """Build every model (no training) and check it fits the benchmark's ``data``."""
        for spec in self.models():
            self.check_model(spec.check(data))

    def check_model(self, model: Any) -> None:
        """Stop where ``model`` (built from one of :meth:`models`) cannot give the scores."""

    def score(self, models: list, data: BenchmarkData, device, progress: bool) -> Scores:
        """Per-image scores (higher = more OOD) of every label on every test set."""
        raise NotImplementedError


class ClassifierDetectors(BenchmarkDetector):
    """Post-hoc detectors of one trained classifier (:mod:`lit_rev.ood.detectors`).

    Each detector fits what it needs (class means, a feature bank) on the benchmark's
    in-distribution training split only, then scores every test set.

    Args:
        name: the classifier's name in the table (rows ``<name>/<detector>``).
        config: the classifier's lit_rev YAML (an ``ImageClassifier``), or several in order.
        detectors: which detectors to run, among ``msp``, ``max_logit``, ``energy``, ``odin``,
            ``mahalanobis``, ``knn``.
        detector_args: keyword arguments per detector, e.g. ``{knn: {k: 10}}``.
        ckpt_path: the classifier's checkpoint; ``None`` trains it from nothing.
        max_steps: training budget in optimiser steps (``None``: the config's own).
        overrides: ``--key=value`` arguments applied after the config.
    """

    def __init__(
        self,
        name: str,
        config: str | list[str],
        detectors: list[DetectorName] | None = None,
        detector_args: dict[str, dict[str, Any]] | None = None,
        ckpt_path: str | None = None,
        max_steps: int | None = None,
        overrides: list[str] | None = None,
    ):
        super().__init__(name)
        self.detectors = list(CLASSIFIER_DETECTORS if detectors is None else detectors)
        self.detector_args = dict(detector_args or {})
        for detector in [*self.detectors, *self.detector_args]:
            if detector not in DETECTORS:
                raise BenchmarkError(
                    f"detectors: {name}: unknown classifier detector {detector!r}; "
                    f"choose among {sorted(DETECTORS)}"
                )
        if not self.detectors:
            raise BenchmarkError(f"detectors: {name}: give at least one classifier detector")
        self.spec = ModelSpec(name, config, overrides or [], ckpt_path, max_steps)

    def models(self) -> list[ModelSpec]:
        """The classifier."""
        return [self.spec]

    def labels(self) -> list[str]:
        """``<name>/<detector>`` per detector."""
        return [f"{self.name}/{d}" for d in self.detectors]

    def score(self, models, data, device, progress):
        """Fit each detector on the training split, then score every test set."""
        (network,) = models
        fitted = {}
        train = OnDevice(data.train_loader(), device)
        for detector in self.detectors:
            fitted[detector] = make_detector(detector, **self.detector_args.get(detector, {}))
            fitted[detector].fit(network, train)
        parts: dict[str, dict[str, list[torch.Tensor]]] = {label: {} for label in self.labels()}
        for name, x in data.batches(progress, self.name):
            x = x.to(device)
            for detector, label in zip(self.detectors, self.labels(), strict=True):
                values = fitted[detector].score(network, x).detach().reshape(-1)
                parts[label].setdefault(name, []).append(values.cpu())
        return _cat(parts)


def density_scores(
    module: DensityModule, scores: Sequence[str], data: BenchmarkData, progress: bool, what: str
) -> dict[str, dict[str, torch.Tensor]]:
    """Per-image ``scores`` of a density model on every test set of ``data``.

    ``bpd`` and (flows) its parts come from :meth:`DensityModule.test_scores`; the others from
    the module's OOD score objects (:meth:`OODScore.per_image`), prepared on the benchmark's
    held-out in-distribution data (e.g. :class:`Typicality`'s entropy estimate).

    Returns:
        ``{score: {set: (N,) tensor}}``.
    """
    module.use_datamodule(data.datamodule)
    module.prepare_ood_scores(data.reference_loader())
    columns: dict[str, dict[str, list[torch.Tensor]]] = {}
    with torch.no_grad():
        for name, k in data.batches(progress, what):
            for key, value in module.test_scores(k.to(module.device)).items():
                columns.setdefault(name, {}).setdefault(key, []).append(value.cpu())
    out: dict[str, dict[str, list[torch.Tensor]]] = {score: {} for score in scores}
    for name, parts in columns.items():
        per_image = {key: torch.cat(values) for key, values in parts.items()}
        for scorer in module.ood_scores:
            per_image.update(scorer.per_image(per_image))
        for score in scores:
            out[score][name] = [per_image[score]]
    return _cat(out)


class DensityDetector(BenchmarkDetector):
    """A density model (a ``DensityModule`` config) and the scores of it to report.

    Args:
        name: the model's name in the table (rows ``<name>/<score>``).
        config: the model's lit_rev YAML, or several in order.
        scores: among ``bpd`` (raw bits/dim), ``prior_bpd`` and ``logdet_bpd`` (flows),
            ``typicality``, ``complexity`` (input complexity, PNG) and ``likelihood_ratio``
            (this one needs a ``LikelihoodRatio`` with its background checkpoint in the model
            config's ``ood_scores``). The score objects the config lists are used with their
            settings; the others are added with their defaults.
        ckpt_path: the model's checkpoint; ``None`` trains it from nothing.
        max_steps: training budget in optimiser steps (``None``: the config's own).
        overrides: ``--key=value`` arguments applied after the config.
    """

    def __init__(
        self,
        name: str,
        config: str | list[str],
        scores: list[DensityScore] | None = None,
        ckpt_path: str | None = None,
        max_steps: int | None = None,
        overrides: list[str] | None = None,
    ):
        super().__init__(name)
        self.scores = list(scores or ["bpd", "typicality", "complexity"])
        known = [*NATIVE_DENSITY_SCORES, *DENSITY_SCORERS]
        for score in self.scores:
            if score not in known:
                raise BenchmarkError(
                    f"detectors: {name}: unknown density score {score!r}; choose among {known}"
                )
        self.spec = ModelSpec(name, config, overrides or [], ckpt_path, max_steps)

    def models(self) -> list[ModelSpec]:
        """The density model."""
        return [self.spec]

    def labels(self) -> list[str]:
        """``<name>/<score>`` per score."""
        return [f"{self.name}/{s}" for s in self.scores]

    def check_model(self, model):
        """A ``DensityModule`` that gives every score asked for."""
        self.use_scorers(model)

    def use_scorers(self, module: Any) -> None:
        """Give ``module`` an OOD score object for every score asked for that needs one."""
        where = f"detectors: {self.name} ({' + '.join(self.spec.configs)})"
        if not isinstance(module, DensityModule):
            raise BenchmarkError(
                f"{where}: a density detector needs a DensityModule config, got "
                f"{type(module).__name__}; use ClassifierDetectors for a classifier"
            )
        flows_only = [s for s in self.scores if s in ("prior_bpd", "logdet_bpd")]
        if flows_only and not hasattr(module.network, "log_prob_parts"):
            raise BenchmarkError(
                f"{where}: {flows_only} exist only for flows; "
                f"{type(module.network).__name__} gives bpd alone"
            )
        for score in self.scores:
            if score not in DENSITY_SCORERS:
                continue
            kind, default = DENSITY_SCORERS[score]
            if any(isinstance(s, kind) for s in module.ood_scores):
                continue
            if default is None:
                raise BenchmarkError(
                    f"{where}: the score {score!r} needs a {kind.__name__} in the model config's "
                    "model.init_args.ood_scores (with its settings, e.g. a background checkpoint)"
                )
            module.ood_scores.append(default())

    def score(self, models, data, device, progress):
        """The asked-for scores of the model on every test set."""
        (module,) = models
        self.use_scorers(module)
        values = density_scores(module.to(device), self.scores, data, progress, self.name)
        return {f"{self.name}/{score}": values[score] for score in self.scores}


class WAICEnsemble(BenchmarkDetector):
    """Choi et al. 2018: K density models from different seeds, scored by ``-(mean - var)``.

    The score of an image is :func:`lit_rev.ood.ensemble.waic_score` of its K log-likelihoods
    ``log P(x)`` in nats per image (``-bpd * D * ln 2``; the same quantisation constant for
    every member, so the ranking is that of the log-likelihoods).

    Args:
        name: the ensemble's name in the table (row ``<name>/waic``); member ``i`` is
            ``<name>/<i>`` in logs and ``--ckpt_paths``.
        configs: one lit_rev YAML per member; or give ``config`` and ``seeds``.
        config: one lit_rev YAML for every member, each trained with one of ``seeds``.
        seeds: ``seed_everything`` of each member (with ``config``: one member per seed).
        ckpt_paths: one checkpoint per member (``None`` entries, or none: train from nothing).
        max_steps: training budget of each member in optimiser steps (``None``: the config's).
        overrides: ``--key=value`` arguments applied after each member's config.
    """

    def __init__(
        self,
        name: str,
        configs: list[str] | None = None,
        config: str | None = None,
        seeds: list[int] | None = None,
        ckpt_paths: list[str | None] | None = None,
        max_steps: int | None = None,
        overrides: list[str] | None = None,
    ):
        super().__init__(name)
        if (configs is None) == (config is None):
            raise BenchmarkError(
                f"detectors: {name}: give either configs (one per member) or config and seeds"
            )
        if config is not None:
            if not seeds:
                raise BenchmarkError(f"detectors: {name}: config needs seeds, one per member")
            configs = [config] * len(seeds)
        assert configs is not None
        if seeds is not None and len(seeds) != len(configs):
            raise BenchmarkError(
                f"detectors: {name}: {len(seeds)} seeds for {len(configs)} configs; give one each"
            )
        if len(configs) < 2:
            raise BenchmarkError(
                f"detectors: {name}: WAIC needs at least 2 members (a variance), got {len(configs)}"
            )
        if ckpt_paths is not None and len(ckpt_paths) != len(configs):
            raise BenchmarkError(
                f"detectors: {name}: {len(ckpt_paths)} ckpt_paths for {len(configs)} members"
            )
        self.seeds = list(seeds) if seeds is not None else [None] * len(configs)
        paths = list(ckpt_paths) if ckpt_paths is not None else [None] * len(configs)
        self.members = [
            ModelSpec(
                f"{name}/{i}",
                member,
                list(overrides or []) + ([f"--seed_everything={seed}"] if seed is not None else []),
                path,
                max_steps,
            )
            for i, (member, seed, path) in enumerate(zip(configs, self.seeds, paths, strict=True))
        ]

    def models(self) -> list[ModelSpec]:
        """The K members."""
        return self.members

    def labels(self) -> list[str]:
        """``<name>/waic``."""
        return [f"{self.name}/waic"]

    def check_model(self, model):
        """A ``DensityModule``."""
        if not isinstance(model, DensityModule):
            raise BenchmarkError(
                f"detectors: {self.name}: a WAIC member needs a DensityModule config, got "
                f"{type(model).__name__}"
            )

    def score(self, models, data, device, progress):
        """Each member's bits/dim on every set, combined into the WAIC score."""
        per_member = []
        dims = math.prod(data.datamodule.shape)
        for i, module in enumerate(models):
            bpd = density_scores(module.to(device), ["bpd"], data, progress, f"{self.name}/{i}")
            per_member.append(bpd["bpd"])
        out = {}
        for name in data.names:
            log_likelihood = torch.stack([-m[name] * dims * math.log(2) for m in per_member])
            out[name] = waic_score(log_likelihood).double()
        return {f"{self.name}/waic": out}


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------
def benchmark_rows(
    scores: Scores,
    in_name: str,
    ood_names: Sequence[str],
    failed: dict[str, str] | None = None,
    order: Sequence[str] | None = None,
) -> list[dict]:
    """The table: one row per (detector, OOD set) and one of means over the sets per detector.

    Each row holds ``detector``, ``set`` and the metrics of :data:`OOD_METRICS` in that order.
    A metric that cannot be given (non-finite or no scores, or a detector that failed, see
    ``failed``: ``{label: reason}``) is ``None`` and ``missing`` says why; a mean over sets of
    which one is missing is ``None`` too. Rows of ``failed`` labels with no scores are included.
    Detectors come in the order of ``order`` (default: those of ``scores``, then ``failed``).
    """
    rows = []
    failed = failed or {}
    if order is None:
        order = [*scores, *failed]
    for label in dict.fromkeys(label for label in order if label in scores or label in failed):
        sets = scores.get(label, {})
        per_set = []
        for name in ood_names:
            row: dict[str, Any] = {"detector": label, "set": name}
            why = failed.get(label)
            if why is None:
                empty = torch.zeros(0)
                metrics, why = checked_metrics(
                    sets.get(in_name, empty), sets.get(name, empty), in_name, name
                )
                row.update(metrics)
            else:
                row.update(dict.fromkeys(OOD_METRICS))
            if why is not None:
                row["missing"] = why
            per_set.append(row)
        mean: dict[str, Any] = {"detector": label, "set": MEAN}
        lacking = [r["set"] for r in per_set if "missing" in r]
        for metric in OOD_METRICS:
            values = [r[metric] for r in per_set]
            mean[metric] = None if lacking else sum(values) / len(values)
        if lacking:
            mean["missing"] = f"no mean: no metrics for {', '.join(lacking)}"
        rows.extend([*per_set, mean])
    return rows


def failure_lines(rows: Sequence[dict]) -> list[str]:
    """Every missing cell of the table, grouped: ``<detectors>: <reason> (<sets>)`` per line."""
    reasons: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.get("missing") and r["set"] != MEAN:
            reasons.setdefault(r["missing"], {}).setdefault(r["detector"], []).append(r["set"])
    lines = []
    for reason, by_label in reasons.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        for label, sets in by_label.items():
            groups.setdefault(tuple(sets), []).append(label)
        for sets, labels in groups.items():
            lines.append(f"{', '.join(labels)} on {', '.join(sets)}: {reason}")
    return lines


def reaches_target(rows: Sequence[dict], label: str, ood_names: Sequence[str]) -> str:
    """``yes`` where ``label`` has AUROC >= 0.95 and FPR@95 <= 0.2 on every OOD set.

    ``no`` where a set misses either, ``n/a`` where a set has no metrics (and none fails).
    """
    verdicts = []
    for r in rows:
        if r["detector"] == label and r["set"] in ood_names:
            if r["auroc"] is None or r["fpr_at_95_tpr"] is None:
                verdicts.append(None)
            else:
                verdicts.append(r["auroc"] >= TARGET_AUROC and r["fpr_at_95_tpr"] <= TARGET_FPR)
    if any(v is False for v in verdicts):
        return "no"
    return "n/a" if any(v is None for v in verdicts) or not verdicts else "yes"


def summary_rows(rows: Sequence[dict], ood_names: Sequence[str]) -> list[dict]:
    """One row per detector: ``AUROC / FPR@95`` per OOD set and their means, and the target.

    ``target`` is :func:`reaches_target` (AUROC >= 0.95 and FPR@95 <= 0.2 on every set).
    """
    out = []
    labels = list(dict.fromkeys(r["detector"] for r in rows))
    for label in labels:
        row: dict[str, Any] = {"detector": label}
        for r in rows:
            if r["detector"] == label:
                missing = r["auroc"] is None or r["fpr_at_95_tpr"] is None
                row[r["set"]] = "n/a" if missing else f"{r['auroc']:.3f} / {r['fpr_at_95_tpr']:.3f}"
        row["target"] = reaches_target(rows, label, ood_names)
        out.append(row)
    return out


def heatmap(rows: Sequence[dict], metric: str, columns: Sequence[str], in_name: str = ""):
    """A detectors x sets heat map of ``metric``, every cell annotated (``n/a`` where missing).

    ``in_name`` (the in-distribution set) goes into the title.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(dict.fromkeys(r["detector"] for r in rows))
    values = np.full((len(labels), len(columns)), np.nan)
    for r in rows:
        if r["set"] in columns and r[metric] is not None:
            values[labels.index(r["detector"]), list(columns).index(r["set"])] = r[metric]
    lower_is_better = metric == "fpr_at_95_tpr"
    cmap = plt.get_cmap("viridis_r" if lower_is_better else "viridis").with_extremes(
        bad="lightgrey"
    )
    width = 1.6 + 1.1 * len(columns)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.38 * len(labels)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    for i in range(len(labels)):
        for j in range(len(columns)):
            v = values[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.2f}"
            dark = not np.isnan(v) and (v > 0.6 if lower_is_better else v < 0.4)
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if dark else "k")
    names = {
        "auroc": "AUROC (higher is better)",
        "fpr_at_95_tpr": "FPR at 95% TPR (lower is better)",
    }
    against = f"in-distribution {in_name}, " if in_name else ""
    ax.set_title(f"{names.get(metric, metric)}; {against}OOD = positive class")
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


def write_tables(
    rows: list[dict], ood_names: Sequence[str], out: Path, meta: dict, logger=None
) -> dict[str, Path]:
    """Write the table, the summary and the two heat maps; log the figures to TensorBoard.

    ``meta`` goes into both JSON files (its ``in_distribution``, if any, into the figures'
    titles); the summary and figures also go to TensorBoard when a ``logger`` is given.
    """
    paths = write_report(rows, out, STEM, meta)
    summary = summary_rows(rows, ood_names)
    write_report(summary, out, f"{STEM}_summary", meta)
    paths["summary"] = out / f"{STEM}_summary.md"
    if rows:
        columns = [*ood_names, MEAN]
        for metric in ("auroc", "fpr_at_95_tpr"):
            fig = heatmap(rows, metric, columns, str(meta.get("in_distribution") or ""))
            paths[f"heatmap_{metric}"] = save_figure(fig, out, f"heatmap_{metric}", logger)
        experiment = getattr(logger, "experiment", None)
        if experiment is not None:
            experiment.add_text(STEM, format_table(summary, markdown=True))
            experiment.flush()
    return paths


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------
def parser() -> ArgumentParser:
    """The command's options.

    A ``--config`` YAML gives any of them, ``data`` and ``detectors`` at least.
    """
    options = ArgumentParser(
        prog="python -m lit_rev.commands.ood_benchmark",
        description=__doc__.split("\n\n")[0],
        default_env=False,
    )
    options.add_argument("--config", action=ActionConfigFile, help="the benchmark's YAML")
    options.add_argument(
        "--data",
        type=LightningDataModule,
        required=True,
        help="the in-distribution DataModule with its OOD sets (a lit_rev config's data block)",
    )
    options.add_argument(
        "--detectors",
        type=list[BenchmarkDetector],
        required=True,
        help="DensityDetector, ClassifierDetectors and WAICEnsemble entries (see their --help)",
    )
    options.add_argument(
        "--out",
        type=str | None,
        default=None,
        help="output directory (default: logs/ood_benchmark/<config stem>)",
    )
    options.add_argument("--seed", type=int, default=0, help="seeds everything before each step")
    options.add_argument(
        "--torch_threads",
        type=int | None,
        default=None,
        help="torch.set_num_threads (small models on few cores are often fastest with 1)",
    )
    options.add_argument(
        "--max_images",
        type=int | None,
        default=None,
        help="cap on every test set (seeded; --data.init_args.max_train caps the training "
        "images that classifier detectors fit on)",
    )
    options.add_argument(
        "--ckpt_paths",
        type=dict[str, str],
        default={},
        help="checkpoints by model name (a WAIC member: <name>/<i>), e.g. "
        "--ckpt_paths.glow logs/glow/version_0/checkpoints/last.ckpt; overrides the YAML's",
    )
    options.add_argument(
        "--train_overrides",
        type=list[str],
        default=[],
        help="--key=value overrides of every training run, after each model's own "
        "(e.g. ['--trainer.max_steps=2'] for a smoke test)",
    )
    options.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    options.add_argument("--progress", type=bool, default=True, help="progress bars")
    options.add_argument(
        "--fresh", type=bool, default=False, help="recompute every detector's scores"
    )
    options.add_argument(
        "--check_only",
        type=bool,
        default=False,
        help="parse, build every model without training and check it fits the data; then stop",
    )
    return options


def _cache_key(
    detector: BenchmarkDetector, raw: Namespace | dict, data: Namespace | dict, args: Namespace
) -> str:
    """What a detector's scores depend on, as one string.

    Its entry, its models (checkpoints included), the data block, the test-set cap, the seed
    and the training overrides.
    """

    def plain(value):
        return value.as_dict() if isinstance(value, Namespace) else value

    settings = {
        "detector": plain(raw),
        "models": [spec.describe() for spec in detector.models()],
        "data": plain(data),
        "max_images": args.max_images,
        "seed": args.seed,
        "train_overrides": list(args.train_overrides),
    }
    return json.dumps(settings, sort_keys=True, default=str)


def _load_cached(path: Path, key: str) -> tuple[Scores, dict] | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable file (e.g. cut short by a crash) is recomputed
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return saved["scores"], json.loads(saved["info"])


def _apply_ckpt_paths(detectors: list[BenchmarkDetector], ckpt_paths: dict[str, str]) -> None:
    specs = {spec.label: spec for d in detectors for spec in d.models()}
    for label, path in ckpt_paths.items():
        if label not in specs:
            raise BenchmarkError(
                f"--ckpt_paths: no model named {label!r}; the models are {sorted(specs)}"
            )
        specs[label].ckpt_path = path


def run(args: Namespace, parsed: ArgumentParser) -> tuple[list[dict], list[str]]:
    """Run the benchmark of parsed ``args``; returns the table's rows and the failures."""
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    raw_detectors = list(args.detectors)
    raw_data = args.data
    config_path = args.config[0] if args.get("config") else None
    stem = Path(str(config_path)).stem if config_path else STEM
    out = Path(args.out or Path("logs") / "ood_benchmark" / stem)
    seed_everything(args.seed, verbose=False)
    built = parsed.instantiate_classes(args)
    detectors: list[BenchmarkDetector] = list(built.detectors)
    names = [d.name for d in detectors]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BenchmarkError(f"detectors: the names {repeated} are used more than once")
    _apply_ckpt_paths(detectors, dict(args.ckpt_paths))
    for detector in detectors:  # before any training: every config parses and fits the data
        detector.check(built.data)
    seed_everything(args.seed, verbose=False)
    data = BenchmarkData(built.data, args.max_images)
    if args.check_only:
        labels = [label for d in detectors for label in d.labels()]
        print(f"{len(detectors)} detectors fit the data ({', '.join(labels)}); sets {data.names}")
        return [], []
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(out), name="tensorboard", version="")
    meta: dict[str, Any] = {
        "config": str(config_path) if config_path else None,
        "in_distribution": data.in_name,
        "sets": data.describe(),
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "max_images": args.max_images,
        "device": str(device),
        "convention": "OOD is the positive class for AUROC and AUPR-out, the in-distribution "
        "set for AUPR-in; FPR at the threshold keeping 95% of in-distribution images; "
        "higher score = more OOD",
        "detectors": {},
    }
    scores: Scores = {}
    failed: dict[str, str] = {}
    order = [label for d in detectors for label in d.labels()]
    start = time.perf_counter()
    for index, (detector, raw) in enumerate(zip(detectors, raw_detectors, strict=True)):
        cache = out / "scores" / f"{detector.name}.pt"
        key = _cache_key(detector, raw, raw_data, args)
        cached = None if args.fresh else _load_cached(cache, key)
        head = f"[{index + 1}/{len(detectors)}] {detector.name}"
        if cached is not None:
            found, info = cached
            print(f"{head}: scores of an earlier run with the same settings ({cache})", flush=True)
        else:
            print(f"{head}: {', '.join(detector.labels())}", flush=True)
            seed_everything(args.seed, verbose=False)
            tic = time.perf_counter()
            try:
                models, infos = [], []
                for spec in detector.models():
                    model, info = spec.build(out / "models", args.train_overrides, args.progress)
                    models.append(model.to(device))
                    infos.append({"model": spec.label, **spec.describe(), **info})
                seed_everything(args.seed, verbose=False)
                found = detector.score(models, data, device, args.progress)
                info = {"models": infos, "seconds": round(time.perf_counter() - tic, 1)}
            except (KeyboardInterrupt, BenchmarkError):
                raise
            except Exception as error:  # recorded; the other detectors still run
                traceback.print_exc()
                reason = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
                for label in detector.labels():
                    failed[label] = reason
                meta["detectors"][detector.name] = {"status": reason}
                found, info = {}, None
            if info is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                saved = {"key": key, "scores": found, "info": json.dumps(info, default=str)}
                torch.save(saved, cache)
        if info is not None:
            meta["detectors"][detector.name] = info
        scores.update(found)
        rows = benchmark_rows(scores, data.in_name, data.ood_names, failed, order)
        meta["seconds"] = round(time.perf_counter() - start, 1)
        meta["status"] = "running"
        write_tables(rows, data.ood_names, out, meta)
    rows = benchmark_rows(scores, data.in_name, data.ood_names, failed, order)
    failures = failure_lines(rows)
    meta["status"] = "failed: " + "; ".join(failures) if failures else "ok"
    meta["seconds"] = round(time.perf_counter() - start, 1)
    paths = write_tables(rows, data.ood_names, out, meta, logger)
    print(
        f"\nOOD benchmark (in-distribution: {data.in_name}; OOD = positive class, "
        f"higher score = more OOD; target: AUROC >= {TARGET_AUROC} and FPR@95 <= {TARGET_FPR} "
        f"on every set)\n{format_table(summary_rows(rows, data.ood_names))}\n"
        f"Every metric: {paths['md']}\nHeat maps: {paths.get('heatmap_auroc')}, "
        f"{paths.get('heatmap_fpr_at_95_tpr')}; TensorBoard: {out / 'tensorboard'}",
        flush=True,
    )
    if failures:
        lines = "\n  ".join(failures)
        print(f"THE RUN FAILED: cells without metrics (n/a):\n  {lines}", file=sys.stderr)
    return rows, failures


def main(argv: list[str] | None = None) -> list[dict]:
    """The command line (see the module docstring); exits 1 where a cell is missing.

    Returns:
        The table's rows.
    """
    options = parser()
    args = options.parse_args(argv)
    try:
        rows, failures = run(args, options)
    except (BenchmarkError, ConfigError) as error:
        options.error(str(error))
    if failures:
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()

"""The entries of a benchmark config's ``detectors:`` list.

Each is a model (or several) and the rows it adds to the table:

* :class:`DensityEntry`: a density model and the scores of it to report (raw bits/dim,
  typicality, input complexity, ...);
* :class:`ClassifierEntry`: a classifier and the post-hoc detectors of
  :mod:`lit_rev.ood.detectors` to run on it;
* :class:`WAICEntry`: K density models scored by the WAIC of Choi et al. 2018.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule

from lit_rev.density import DensityModule, InputComplexity, Typicality
from lit_rev.density.scores import LikelihoodRatio, OODScore
from lit_rev.evaluation.ood_benchmark.data import BenchmarkData, OnDevice, Scores, concat_scores
from lit_rev.evaluation.ood_benchmark.models import BenchmarkError, ModelSpec, file_sha256
from lit_rev.inference import evaluating, score_batches
from lit_rev.ood.detectors import DETECTORS, DetectorName, make_detector
from lit_rev.ood.ensemble import waic_score

#: The per-image scores a density model gives without any OOD score object (bits/dim; flows
#: also give its density and volume parts).
NATIVE_DENSITY_SCORES = ("bpd", "prior_bpd", "logdet_bpd")
#: The density scores a :class:`DensityEntry` reports (the parser lists them in ``--help``).
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
#: The classifier detectors that fit on the network's penultimate features.
FEATURE_DETECTORS = ("mahalanobis", "knn")
#: Every classifier detector, the default of :class:`ClassifierEntry`.
CLASSIFIER_DETECTORS = tuple(DETECTORS)
#: The benchmark's settings of detectors where they differ from the detectors' own defaults
#: (a ``detector_args`` entry overrides them key by key): ODIN's temperature and epsilon
#: chosen on in-distribution validation data, not the paper's CIFAR-10 values, and KNN's k
#: scaled with the training bank, not the paper's 50 for 50,000 images.
BENCHMARK_DETECTOR_ARGS: dict[str, dict[str, Any]] = {
    "odin": {"temperature": "auto", "epsilon": "auto"},
    "knn": {"k": "auto"},
}


class BenchmarkEntry:
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

    def scoring_settings(self) -> dict:
        """Settings of the scores beyond the entry's config block (defaults it applies)."""
        return {}

    def chosen_settings(self) -> dict:
        """What the last :meth:`score` chose or fitted (e.g. ODIN's T, KNN's k), for the meta."""
        return {}


class ClassifierEntry(BenchmarkEntry):
    """Post-hoc detectors of one trained classifier (:mod:`lit_rev.ood.detectors`).

    Each detector fits what it needs (class means, a feature bank) on the benchmark's
    in-distribution training split only, chooses what it chooses (ODIN's temperature and
    epsilon) on the in-distribution validation split only, then scores every test set.
    The settings of :data:`BENCHMARK_DETECTOR_ARGS` apply unless ``detector_args`` overrides
    them: ``{odin: {temperature: 1000, epsilon: 0.0014}}`` is the paper's fixed setting.

    Args:
        name: the classifier's name in the table (rows ``<name>/<detector>``).
        config: the classifier's lit_rev YAML (an ``ImageClassifier``), or several in order.
        detectors: which detectors to run, among ``msp``, ``max_logit``, ``energy``, ``odin``,
            ``mahalanobis``, ``knn``.
        detector_args: keyword arguments per detector, e.g. ``{knn: {k: 10}}``, over
            :data:`BENCHMARK_DETECTOR_ARGS`.
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
        for detector in self.detectors:  # bad settings stop the command before any training
            try:
                make_detector(detector, **self.arguments(detector))
            except (TypeError, ValueError) as error:
                raise BenchmarkError(
                    f"detectors: {name}: detector_args.{detector}: {error}"
                ) from None
        self.spec = ModelSpec(name, config, overrides or [], ckpt_path, max_steps)
        self.fitted: dict[str, dict] = {}

    def arguments(self, detector: str) -> dict[str, Any]:
        """The keyword arguments ``detector`` is built with: the benchmark's, then the entry's."""
        return {**BENCHMARK_DETECTOR_ARGS.get(detector, {}), **self.detector_args.get(detector, {})}

    def scoring_settings(self) -> dict:
        """Each detector's keyword arguments, the benchmark's defaults included."""
        return {detector: self.arguments(detector) for detector in self.detectors}

    def chosen_settings(self) -> dict:
        """Each detector's settings as fitted and chosen (``describe()``), by detector."""
        return dict(self.fitted)

    def models(self) -> list[ModelSpec]:
        """The classifier."""
        return [self.spec]

    def labels(self) -> list[str]:
        """``<name>/<detector>`` per detector."""
        return [f"{self.name}/{d}" for d in self.detectors]

    def check_model(self, model):
        """A classifier: ``forward`` gives logits, ``features`` where a detector needs them."""
        where = f"detectors: {self.name} ({' + '.join(self.spec.configs)})"
        if isinstance(model, DensityModule):
            raise BenchmarkError(
                f"{where}: a classifier entry needs a classifier config (e.g. an "
                "ImageClassifier), got a DensityModule; use DensityEntry for a density model"
            )
        if getattr(type(model), "forward", None) is torch.nn.Module.forward:
            raise BenchmarkError(
                f"{where}: {type(model).__name__} has no forward giving logits, which every "
                "classifier detector calls; give a classifier config (e.g. an ImageClassifier)"
            )
        need_features = [d for d in self.detectors if d in FEATURE_DETECTORS]
        if need_features and not callable(getattr(model, "features", None)):
            raise BenchmarkError(
                f"{where}: {need_features} need the penultimate features, but "
                f"{type(model).__name__} has no features(x); drop them or give a classifier "
                "that has one (lit_rev's RevNet, ResNet)"
            )

    def score(self, models, data, device, progress):
        """Fit each detector on the training split, choose on validation, score every set."""
        (network,) = models
        fitted = {}
        train = OnDevice(data.train_loader(), device)
        validation = OnDevice(data.reference_loader(), device)
        for detector in self.detectors:
            fitted[detector] = make_detector(detector, **self.arguments(detector))
            fitted[detector].fit(network, train)
            fitted[detector].calibrate(network, validation)
        self.fitted = {detector: fitted[detector].describe() for detector in self.detectors}
        parts: dict[str, dict[str, list[torch.Tensor]]] = {label: {} for label in self.labels()}
        for name, x in data.batches(progress, self.name):
            x = x.to(device)
            for detector, label in zip(self.detectors, self.labels(), strict=True):
                values = fitted[detector].score(network, x).detach().reshape(-1)
                parts[label].setdefault(name, []).append(values.cpu())
        return concat_scores(parts)


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
    columns: dict[str, dict[str, torch.Tensor]] = {}
    with evaluating(module):
        # the batches come set after set: one scoring loop per set
        for name, batches in itertools.groupby(data.batches(progress, what), key=lambda b: b[0]):
            columns[name] = score_batches(
                lambda k: module.test_scores(k.to(module.device)), (k for _, k in batches)
            )
    out: dict[str, dict[str, list[torch.Tensor]]] = {score: {} for score in scores}
    for name, per_image in columns.items():
        per_image = dict(per_image)
        for scorer in module.ood_scores:
            per_image.update(scorer.per_image(per_image))
        for score in scores:
            out[score][name] = [per_image[score]]
    return concat_scores(out)


class DensityEntry(BenchmarkEntry):
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
                f"{type(module).__name__}; use ClassifierEntry for a classifier"
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


class WAICEntry(BenchmarkEntry):
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

    def check(self, data: LightningDataModule) -> None:
        """Refuse identical members (no variance: one model's score), then check each."""
        seen: dict[tuple, str] = {}
        for spec in self.members:
            if spec.ckpt_path is not None:  # the seed only matters to training
                overrides = [o for o in spec.overrides if not o.startswith("--seed_everything=")]
                path = Path(spec.ckpt_path)
                weights = file_sha256(path) if path.is_file() else spec.ckpt_path
            else:
                overrides, weights = spec.overrides, None
            configs = tuple(file_sha256(c) if Path(c).is_file() else c for c in spec.configs)
            identity = (configs, tuple(overrides), weights)
            if identity in seen:
                raise BenchmarkError(
                    f"detectors: {self.name}: members {seen[identity]} and {spec.label} are the "
                    "same model (same config and overrides, and the same seed or checkpoint): "
                    "their WAIC has no variance and ranks images as one model does; give each "
                    "member its own seed or checkpoint"
                )
            seen[identity] = spec.label
        super().check(data)

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

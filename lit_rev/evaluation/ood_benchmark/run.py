"""The benchmark's steps: prepare, score each entry (or reuse its cache), write the tables.

:func:`prepare` builds and checks every entry against the data before anything is trained;
:func:`run_benchmark` scores each entry with :func:`score_entry` or takes its cached scores,
and rewrites the tables after each entry and at the end.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, seed_everything

from lit_rev.evaluation.ood_benchmark.cache import cache_key, cache_path, load_cached, save_cached
from lit_rev.evaluation.ood_benchmark.data import BenchmarkData, Scores
from lit_rev.evaluation.ood_benchmark.entries import BenchmarkEntry
from lit_rev.evaluation.ood_benchmark.models import BenchmarkError
from lit_rev.evaluation.ood_benchmark.tables import (
    MIN_IMAGES,
    TARGET_AUROC,
    TARGET_FPR,
    FprConvention,
    benchmark_rows,
    check_groups,
    failure_lines,
    fpr_column,
    summary_rows,
    write_tables,
)
from lit_rev.report import format_table


@dataclass
class Benchmark:
    """A benchmark ready to score: its entries, checked against its data.

    Attributes:
        entries: the entries, in the order of the table.
        settings: each entry's block of the benchmark config, as parsed (for the cache key).
        data_settings: the benchmark's ``data`` block, as parsed (for the cache key).
        data: the benchmark's data, set up.
        seed: seeds everything before each step.
        max_images: the cap on every test set (``None``: the DataModule's own).
        train_overrides: ``--key=value`` overrides of every training run.
        config: the benchmark config's path, for the report.
        fpr_convention: the FPR@95 of the summary, heat map and target (``in`` or ``openood``,
            :data:`~lit_rev.evaluation.ood_benchmark.tables.FPR_COLUMNS`).
        ood_groups: ``{group: [OOD set, ...]}`` (e.g. near and far), each OOD set in one
            group; each group's mean gets a row ``mean_<group>``.
    """

    entries: list[BenchmarkEntry]
    settings: list[dict]
    data_settings: dict
    data: BenchmarkData
    seed: int = 0
    max_images: int | None = None
    train_overrides: Sequence[str] = ()
    config: str | None = None
    fpr_convention: FprConvention = "in"
    ood_groups: dict[str, list[str]] | None = None

    def labels(self) -> list[str]:
        """Every row label of the table, in order."""
        return [label for entry in self.entries for label in entry.labels()]


def apply_ckpt_paths(entries: Sequence[BenchmarkEntry], ckpt_paths: dict[str, str]) -> None:
    """Give the models named in ``ckpt_paths`` (``{model label: path}``) those checkpoints."""
    specs = {spec.label: spec for entry in entries for spec in entry.models()}
    for label, path in ckpt_paths.items():
        if label not in specs:
            raise BenchmarkError(
                f"--ckpt_paths: no model named {label!r}; the models are {sorted(specs)}"
            )
        specs[label].ckpt_path = path


def check_out_dir(out: Path) -> None:
    """Stop before any work where ``out`` cannot be the output directory.

    It must be a directory, or not exist yet below a directory; either must be writable.

    Raises:
        BenchmarkError: naming ``--out``, what is in the way and the fix.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchmarkError(
            f"--out {out}: exists and is not a directory; give a directory (new or existing)"
        )
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BenchmarkError(
            f"--out {out}: {existing} is not a directory, so {out} cannot be made; "
            "give another output directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchmarkError(
            f"--out {out}: {existing} is not writable; give a directory you can write to"
        )


def prepare(
    datamodule: LightningDataModule,
    entries: Sequence[BenchmarkEntry],
    settings: Sequence[dict],
    data_settings: dict,
    *,
    ckpt_paths: dict[str, str] | None = None,
    search_dirs: Sequence[Path] = (),
    seed: int = 0,
    max_images: int | None = None,
    train_overrides: Sequence[str] = (),
    config: str | None = None,
    fpr_convention: FprConvention = "in",
    ood_groups: dict[str, list[str]] | None = None,
) -> Benchmark:
    """Check every entry against the data before anything is trained; set up the data.

    Args:
        datamodule: the benchmark's DataModule with its OOD sets (not set up yet).
        entries: the benchmark's entries; ``settings`` holds each one's config block.
        settings: each entry's block of the benchmark config, as parsed.
        data_settings: the benchmark's ``data`` block, as parsed.
        ckpt_paths: checkpoints by model label, overriding the entries' own.
        search_dirs: where model configs are looked for after the current directory
            (:func:`~lit_rev.evaluation.ood_benchmark.models.resolve_config`).
        seed: seeds everything before the data are set up.
        max_images: the cap on every test set.
        train_overrides: ``--key=value`` overrides of every training run.
        config: the benchmark config's path, for the report.
        fpr_convention: ``in`` or ``openood`` (:class:`Benchmark`).
        ood_groups: ``{group: [OOD set, ...]}`` (:class:`Benchmark`).

    Raises:
        BenchmarkError: a ``max_images`` below 1, repeated names, an unknown ``ckpt_paths``
            model, a config not found, a checkpoint that is missing or does not fit, a model
            that does not fit the data or the entry, an unknown FPR convention, or OOD groups
            that do not split the OOD sets; each message names the entry or option and the fix.
    """
    if max_images is not None and (isinstance(max_images, bool) or max_images < 1):
        raise BenchmarkError(
            f"--max_images {max_images!r}: the cap on every test set must be >= 1 "
            "(leave it out for the data's own max_test)"
        )
    try:
        fpr_column(fpr_convention)
    except ValueError as error:
        raise BenchmarkError(f"--{error}") from None
    entries = list(entries)
    names = [entry.name for entry in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise BenchmarkError(f"detectors: the names {repeated} are used more than once")
    apply_ckpt_paths(entries, dict(ckpt_paths or {}))
    for entry in entries:
        for spec in entry.models():
            spec.resolve(search_dirs)
    for entry in entries:  # before any training: every config parses and fits the data
        entry.check(datamodule)
    seed_everything(seed, verbose=False)
    data = BenchmarkData(datamodule, max_images)
    groups = {str(group): list(names) for group, names in (ood_groups or {}).items()}
    try:
        check_groups(groups, data.ood_names)
    except ValueError as error:
        raise BenchmarkError(f"--{error}") from None
    return Benchmark(
        entries=entries,
        settings=list(settings),
        data_settings=data_settings,
        data=data,
        seed=seed,
        max_images=max_images,
        train_overrides=list(train_overrides),
        config=config,
        fpr_convention=fpr_convention,
        ood_groups=groups or None,
    )


def score_entry(
    entry: BenchmarkEntry,
    benchmark: Benchmark,
    work_dir: Path,
    device: torch.device,
    progress: bool,
) -> tuple[Scores, dict]:
    """Build (load or train) the models of ``entry`` and score every test set with them.

    Training runs write under ``work_dir``. Returns the scores and what was done (per model:
    its settings, weights and build time; the entry's time; under ``settings``, what its
    detectors fitted and chose, e.g. ODIN's temperature and epsilon, KNN's k).
    """
    seed_everything(benchmark.seed, verbose=False)
    tic = time.perf_counter()
    models, infos = [], []
    for spec in entry.models():
        model, info = spec.build(work_dir, benchmark.train_overrides, progress)
        models.append(model.to(device))
        infos.append({"model": spec.label, **spec.describe(), **info})
    seed_everything(benchmark.seed, verbose=False)
    scores = entry.score(models, benchmark.data, device, progress)
    info: dict[str, Any] = {"models": infos, "seconds": round(time.perf_counter() - tic, 1)}
    chosen = entry.chosen_settings()
    if chosen:
        info["settings"] = chosen
    return scores, info


def run_benchmark(
    benchmark: Benchmark,
    out: Path,
    device: torch.device,
    fresh: bool = False,
    progress: bool = True,
) -> tuple[list[dict], list[str]]:
    """Score every entry (or reuse its cached scores) and write the tables under ``out``.

    The tables are rewritten after each entry. An entry that raises anything but a
    :class:`BenchmarkError` leaves its cells missing with the error, and the others still run.

    Args:
        benchmark: from :func:`prepare`.
        out: the output directory.
        device: where the models run.
        fresh: recompute every entry's scores, cached or not.
        progress: progress bars.

    Returns:
        The table's rows and the lines naming its missing cells (none: every cell stands).
    """
    from lightning.pytorch.loggers import TensorBoardLogger

    data = benchmark.data
    conv = benchmark.fpr_convention
    fpr = fpr_column(conv)
    groups = benchmark.ood_groups
    logger = TensorBoardLogger(save_dir=str(out), name="tensorboard", version="")
    meta: dict[str, Any] = {
        "config": benchmark.config,
        "in_distribution": data.in_name,
        "sets": data.describe(),
        "seed": benchmark.seed,
        "torch_threads": torch.get_num_threads(),
        "max_images": benchmark.max_images,
        "device": str(device),
        "convention": "OOD is the positive class for AUROC and AUPR-out, the in-distribution "
        "set for AUPR-in; higher score = more OOD. fpr_at_95_tpr: FPR at the threshold keeping "
        "95% of in-distribution images (ODIN, energy, KNN papers); fpr_at_95_tpr_openood: FPR "
        "at the threshold flagging 95% of OOD images (OpenOOD v1.5). aupr_in/aupr_out: average "
        "precision; aupr_in_openood/aupr_out_openood: trapezoids (OpenOOD v1.5)",
        "fpr_convention": benchmark.fpr_convention,
        "summary_fpr": fpr,
        "ood_groups": benchmark.ood_groups,
        "detectors": {},
    }
    scores: Scores = {}
    failed: dict[str, str] = {}
    order = benchmark.labels()
    start = time.perf_counter()
    entries = benchmark.entries
    for index, (entry, settings) in enumerate(zip(entries, benchmark.settings, strict=True)):
        cache = cache_path(out, entry)
        key = cache_key(
            entry,
            settings,
            benchmark.data_settings,
            benchmark.max_images,
            benchmark.seed,
            benchmark.train_overrides,
        )
        cached = None if fresh else load_cached(cache, key)
        head = f"[{index + 1}/{len(entries)}] {entry.name}"
        if cached is not None:
            found, info = cached
            print(f"{head}: scores of an earlier run with the same settings ({cache})", flush=True)
        else:
            print(f"{head}: {', '.join(entry.labels())}", flush=True)
            try:
                found, info = score_entry(entry, benchmark, out / "models", device, progress)
            except (KeyboardInterrupt, BenchmarkError):
                raise
            except Exception as error:  # recorded; the other entries still run
                traceback.print_exc()
                reason = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
                for label in entry.labels():
                    failed[label] = reason
                meta["detectors"][entry.name] = {"status": reason}
                found, info = {}, None
            if info is not None:
                save_cached(cache, key, found, info)
        if info is not None:
            meta["detectors"][entry.name] = info
        scores.update(found)
        rows = benchmark_rows(scores, data.in_name, data.ood_names, failed, order, groups)
        meta["seconds"] = round(time.perf_counter() - start, 1)
        meta["status"] = "running"
        write_tables(rows, data.ood_names, out, meta, sizes=meta["sets"], fpr_convention=conv)
    rows = benchmark_rows(scores, data.in_name, data.ood_names, failed, order, groups)
    failures = failure_lines(rows)
    meta["status"] = "failed: " + "; ".join(failures) if failures else "ok"
    meta["seconds"] = round(time.perf_counter() - start, 1)
    paths = write_tables(
        rows, data.ood_names, out, meta, logger, sizes=meta["sets"], fpr_convention=conv
    )
    measured_on = "OOD set, OpenOOD v1.5" if conv == "openood" else "in-distribution set"
    summary = summary_rows(rows, data.ood_names, meta["sets"], conv)
    print(
        f"\nOOD benchmark (in-distribution: {data.in_name}; OOD = positive class, "
        f"higher score = more OOD; FPR@95 = {fpr}, TPR measured on the {measured_on}; "
        f"target: AUROC >= {TARGET_AUROC} and FPR@95 <= {TARGET_FPR} "
        f"on every set, from at least {MIN_IMAGES} images a set)\n"
        f"{format_table(summary)}\n"
        f"Every metric: {paths['md']}\nHeat maps: {paths.get('heatmap_auroc')}, "
        f"{paths.get(f'heatmap_{fpr}')}; TensorBoard: {out / 'tensorboard'}",
        flush=True,
    )
    if failures:
        lines = "\n  ".join(failures)
        print(f"THE RUN FAILED: cells without metrics (n/a):\n  {lines}", file=sys.stderr)
    return rows, failures

"""The score cache: each entry's per-image scores, keyed on what they depend on.

Saved under ``<out>/scores/<name>.pt``, so that a rerun with the same settings reuses them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lit_rev.evaluation.ood_benchmark.data import Scores
from lit_rev.evaluation.ood_benchmark.entries import BenchmarkEntry
from lit_rev.evaluation.ood_benchmark.models import file_sha256


def cache_path(out: Path, entry: BenchmarkEntry) -> Path:
    """Where the scores of ``entry`` are saved under the output directory ``out``."""
    return out / "scores" / f"{entry.name}.pt"


def cache_key(
    entry: BenchmarkEntry,
    settings: dict,
    data_settings: dict,
    max_images: int | None,
    seed: int,
    train_overrides: Sequence[str],
) -> str:
    """What the scores of ``entry`` depend on, as one string.

    Args:
        entry: the entry; its models' settings (configs, overrides, checkpoints) count, and
            the SHA-256 of every file they read (``ModelSpec.files``), and the settings its
            scores are computed with (``BenchmarkEntry.scoring_settings``).
        settings: the entry's block of the benchmark config, as parsed.
        data_settings: the benchmark's ``data`` block, as parsed.
        max_images: the cap on every test set.
        seed: the benchmark's seed.
        train_overrides: the overrides of every training run.
    """
    key = {
        "detector": settings,
        "models": [spec.describe() for spec in entry.models()],
        # contents, not paths: an overwritten checkpoint or an edited config is another setting
        "files": [{path: file_sha256(path) for path in spec.files()} for spec in entry.models()],
        "data": data_settings,
        "max_images": max_images,
        "seed": seed,
        "train_overrides": list(train_overrides),
    }
    scoring = entry.scoring_settings()
    if scoring:  # defaults the benchmark applies: a changed default is another setting
        key["scoring"] = scoring
    return json.dumps(key, sort_keys=True, default=str)


def load_cached(path: Path, key: str) -> tuple[Scores, dict] | None:
    """The scores and run information saved at ``path`` under ``key``, else ``None``.

    A missing or unreadable file (e.g. one cut short by a crash) or another key gives ``None``.
    """
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable file is recomputed
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return saved["scores"], json.loads(saved["info"])


def save_cached(path: Path, key: str, scores: Scores, info: dict[str, Any]) -> None:
    """Save ``scores`` and ``info`` at ``path`` under ``key`` (read back by :func:`load_cached`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "scores": scores, "info": json.dumps(info, default=str)}, path)

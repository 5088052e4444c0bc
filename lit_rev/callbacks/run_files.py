"""Where a run writes its files: its own directory, or a free name beside other runs'."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer


def run_dir(trainer: Trainer) -> Path | None:
    """The run's own directory (the logger's version directory), or ``None`` without one."""
    logger = trainer.logger
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    return Path(log_dir) if log_dir else None


def free_path(directory: str | Path, name: str) -> Path:
    """``directory/name``, else ``stem_1.ext``, ``stem_2.ext``, ...: the first free name."""
    directory, stem, suffix = Path(directory), Path(name).stem, Path(name).suffix
    path, n = directory / name, 0
    while path.exists():
        n += 1
        path = directory / f"{stem}_{n}{suffix}"
    return path


def output_path(trainer: Trainer, name: str) -> Path:
    """Where a run writes ``name``: its own directory, else a free name in the root directory.

    Overwriting in the run's own directory is fine; ``trainer.default_root_dir`` is shared
    (the working directory, say), so there the first free name is taken.
    """
    own = run_dir(trainer)
    if own is not None:
        return own / name
    return free_path(trainer.default_root_dir, name)

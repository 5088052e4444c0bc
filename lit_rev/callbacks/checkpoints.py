"""Checkpoints of every run: ``last.ckpt`` on a step schedule, a fault's state, SIGTERM's exit."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lit_rev.callbacks.run_files import free_path, run_dir

# What a shell reports for a process ended by SIGTERM; Lightning's SIGTERMException is a
# SystemExit with no code, which exits 0 and tells a scheduler that the job finished.
SIGTERM_EXIT_CODE = 128 + int(signal.SIGTERM)


@contextlib.contextmanager
def sigterm_exits_nonzero() -> Iterator[None]:
    """Turn Lightning's SIGTERM stop (``SystemExit`` with code ``None``: exit 0) into exit 143."""
    try:
        yield
    except SIGTERMException as stop:
        if not stop.code:
            raise SystemExit(SIGTERM_EXIT_CODE) from stop
        raise


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also rewrites ``last.ckpt`` every ``every_n_steps`` optimiser steps.

    At epoch ends it writes ``last.ckpt`` and the latest epoch's file, exactly as Lightning's
    default. Lightning cannot combine step and epoch triggers in one ``ModelCheckpoint``; here
    the epoch triggers are Lightning's and the step saves write only ``last.ckpt``.
    ``every_n_steps=0`` saves at epoch ends only.
    """

    def __init__(self, every_n_steps: int = 500, **kwargs: Any):
        if every_n_steps < 0:
            raise ValueError(
                f"every_n_steps must be >= 0 (0: epoch ends only), got {every_n_steps}"
            )
        kwargs.setdefault("save_last", True)
        super().__init__(**kwargs)
        self.every_n_steps = every_n_steps
        self._step_saved = 0

    @property
    def state_key(self) -> str:
        """The key a plain ``ModelCheckpoint`` has: checkpoints resume across either callback."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count steps from the start step (a resumed run's is its checkpoint's)."""
        super().on_train_start(trainer, pl_module)
        self._step_saved = trainer.global_step  # a resumed run counts from its checkpoint

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """Lightning's checks, then ``last.ckpt`` when ``every_n_steps`` steps have passed."""
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        step = trainer.global_step
        # ">=" rather than "%": with several optimisers per batch the step can jump past N.
        if not self.every_n_steps or step < self._step_saved + self.every_n_steps:
            return
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        epoch_bookkeeping = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        # Leave Lightning's epoch-end logic as it would be without this save, so the epoch
        # file is still written when an epoch ends on a step save.
        self._last_global_step_saved = epoch_bookkeeping
        self._step_saved = step


class FaultCheckpoint(Callback):
    """Saves the full training state when an exception or a signal stops ``fit``.

    After at least one step, the state (weights, optimiser, schedulers, loop counters) goes to
    ``<checkpoint dir>/on_exception.ckpt``, and the ``--ckpt_path`` that resumes it is printed.

    The directory is the ``ModelCheckpoint``'s (the run's ``checkpoints/``), resolved when the
    fault happens; without a logger a free name is used so another run's file is never
    overwritten. ``last.ckpt`` is left as it was: an exception may leave the weights broken
    (non-finite), so the last regular save stays available next to the fault's state.

    It does what Lightning's ``OnExceptionCheckpoint`` does, from the same ``on_exception``
    hook, without two of its side effects: any ``OnExceptionCheckpoint`` makes every
    ``fit`` without ``--ckpt_path`` silently resume from the newest ``last.ckpt`` or fault
    checkpoint it can find, and it deletes its file after a run that ends well.

    Lightning stops on SIGTERM at the next batch boundary (its ``SIGTERMException``); Ctrl+C
    stops at once, so its state may be mid-step (one optimiser step at most is affected).
    With several processes, only SIGTERM and Ctrl+C (which every process receives) are
    saved: an exception of one process would leave the others waiting at the save's barrier.
    A save that fails is reported and never hides the original exception.
    """

    def __init__(self, filename: str = "on_exception.ckpt"):
        self.filename = filename
        self.saved_path: Path | None = None

    def _resolve_path(self, trainer: Trainer) -> Path:
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None)
        own = run_dir(trainer)
        if directory is None:
            directory = (own if own is not None else Path(trainer.default_root_dir)) / "checkpoints"
        if own is None:
            return free_path(directory, self.filename)
        return Path(directory) / self.filename

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Save the state and print how to resume (``fit`` only, after at least one step)."""
        if trainer.state.fn != TrainerFn.FITTING or trainer.fast_dev_run:
            return
        if trainer.global_step == 0:  # nothing trained yet, nothing to lose
            return
        signalled = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if trainer.world_size > 1 and not signalled:
            rank_zero_warn(
                f"{type(exception).__name__} in a {trainer.world_size}-process run: no fault "
                "checkpoint (saving would wait on the other processes); resume from last.ckpt"
            )
            return
        what = "SIGTERM" if isinstance(exception, SIGTERMException) else type(exception).__name__
        try:
            path = trainer.strategy.broadcast(self._resolve_path(trainer))
            trainer.save_checkpoint(path, weights_only=False)
        except Exception as error:
            print(
                f"{what} at step {trainer.global_step}: could not save a fault checkpoint "
                f"({type(error).__name__}: {error})",
                file=sys.stderr,
                flush=True,
            )
            return
        self.saved_path = path
        if trainer.is_global_zero:
            print(
                f"{what} at step {trainer.global_step}: training state saved to {path}\n"
                f"  resume with: --ckpt_path {path}",
                file=sys.stderr,
                flush=True,
            )


# --- safe writes ------------------------------------------------------------------------------
class UnreadableCheckpoint(RuntimeError):
    """A checkpoint that cannot be read (cut short); the message names the last readable one."""


def readable(path: Path) -> bool:
    """Whether ``path`` is a complete torch checkpoint: a zip archive whose every entry checks."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def last_readable_checkpoint(directory: Path, besides: Path | None = None) -> Path | None:
    """The newest readable ``*.ckpt`` in ``directory`` other than ``besides``, else ``None``."""
    candidates = [p for p in Path(directory).glob("*.ckpt") if besides is None or p != besides]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        if readable(path):
            return path
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint file IO, writing each file whole or not at all.

    A checkpoint goes to a temporary name beside its target and is renamed over it only once
    complete: a full disk or a killed process leaves the previous file (or none), never a
    truncated one. Reading a file that is not a complete checkpoint raises
    :class:`UnreadableCheckpoint` naming the newest readable checkpoint in the same directory.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to a temporary file, then rename it to ``path``."""
        path = Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)
        finally:
            if partial.exists():  # the write failed: leave nothing half-written behind
                partial.unlink()

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict:
        """Lightning's read; a file cut short raises :class:`UnreadableCheckpoint`."""
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
            path = Path(path)
            if readable(path):  # a complete archive: the error is not about the file's bytes
                raise
            good = last_readable_checkpoint(path.parent, besides=path)
            hint = (
                f"the newest readable checkpoint there is {good}: resume with --ckpt_path {good}"
                if good is not None
                else f"there is no readable checkpoint in {path.parent}"
            )
            raise UnreadableCheckpoint(
                f"the checkpoint {path} cannot be read ({type(error).__name__}: {error}); it is "
                f"incomplete (a full disk or a killed save?): {hint}"
            ) from error

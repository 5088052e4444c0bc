"""A training budget in CPU time: :class:`CPUTimeBudget`.

Runs on a shared machine get the same compute whatever else runs beside them.
"""

from __future__ import annotations

import time

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class CPUTimeBudget(Callback):
    """Stops ``fit`` once this process has used ``seconds`` of CPU time in training.

    Unlike ``trainer.max_time`` (wall clock), the budget does not shrink when other jobs
    share the cores: ``time.process_time()`` counts this process's CPU seconds over all its
    threads (run with ``--torch_threads 1`` for a budget in core-seconds). Validation and
    sanity checks count too; the budget is checked after every training batch.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._start: float | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the CPU clock."""
        self._start = time.process_time()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        """Stop training once the budget is spent."""
        if self._start is not None and time.process_time() - self._start >= self.seconds:
            if not trainer.should_stop:
                rank_zero_info(
                    f"CPU budget of {self.seconds:.0f} s reached at step {trainer.global_step}; "
                    "stopping"
                )
            trainer.should_stop = True

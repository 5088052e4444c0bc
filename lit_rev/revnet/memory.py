"""Measuring activation memory: bytes autograd saves for backward, peak RSS, CUDA peak.

:class:`SavedTensorMeter` counts, through ``torch.autograd.graph.saved_tensors_hooks``, every
tensor autograd keeps for the backward (custom Functions' ``save_for_backward`` included),
each underlying storage once, parameters excluded. :class:`ActivationMemoryMonitor` logs it
per training step, with peak RSS (CPU) or peak allocated memory (CUDA).
"""

from __future__ import annotations

import os
import resource

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

MIB = 2.0**20


class SavedTensorMeter:
    """Context manager: bytes of the distinct storages autograd saves for backward inside it.

    ``exclude`` (a module or tensors) lists storages not to count, by default the parameters
    of the module given. Saved tensors stay untouched; only their storage addresses are read.

    Under ``saved_tensors_hooks`` autograd no longer checks that a saved tensor is unchanged when
    the backward uses it, so an in-place change in between would give a silently wrong gradient.
    The hooks therefore keep that check themselves: the pack hook records the tensor's version
    counter and the unpack hook raises autograd's usual error if it has moved.
    """

    def __init__(self, exclude: nn.Module | list[torch.Tensor] | None = None):
        tensors = (
            list(exclude.parameters()) if isinstance(exclude, nn.Module) else list(exclude or [])
        )
        self._excluded = {t.untyped_storage().data_ptr() for t in tensors}
        self._seen: dict[int, int] = {}
        self._hooks = None

    @property
    def bytes(self) -> int:
        """Bytes of the distinct storages saved so far (since the last ``__enter__``)."""
        return sum(self._seen.values())

    def _pack(self, t: torch.Tensor) -> tuple[torch.Tensor, int]:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._excluded and ptr not in self._seen:
            self._seen[ptr] = storage.nbytes()
        return t, t._version

    @staticmethod
    def _unpack(packed: tuple[torch.Tensor, int]) -> torch.Tensor:
        t, version = packed
        if t._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: [{t.type()} {list(t.shape)}] is at version {t._version}; "
                f"expected version {version} instead (checked by SavedTensorMeter, whose "
                "saved_tensors_hooks replace autograd's own check)"
            )
        return t

    def __enter__(self) -> SavedTensorMeter:
        self._seen.clear()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None


def current_rss_bytes() -> int:
    """Resident set size of this process now (0 where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """Peak resident set size (since the last :func:`reset_peak_rss`, where Linux allows it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ``clear_refs``).

    Returns ``False`` where that is not possible (the peak then counts from the process start).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class ActivationMemoryMonitor(Callback):
    """Logs activation memory of each training step (every ``every_n_steps``) to the loggers.

    * ``memory/saved_activations_mib``: bytes autograd saved during the forward, parameters
      excluded;
    * ``memory/peak_rss_mib`` (CPU): the process's peak resident set during the step;
    * ``memory/cuda_peak_allocated_mib`` (GPU): ``torch.cuda.max_memory_allocated`` during the
      step.

    The latest values are also kept in ``last``.
    """

    def __init__(self, every_n_steps: int = 1):
        super().__init__()
        self.every_n_steps = every_n_steps
        self._meter: SavedTensorMeter | None = None
        self.last: dict[str, float] = {}

    def _active(self, trainer: Trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int
    ) -> None:
        """Reset the peak-memory marks and start counting saved tensors (on measured steps)."""
        if not self._active(trainer):
            return
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        else:
            reset_peak_rss()
        self._meter = SavedTensorMeter(pl_module)
        self._meter.__enter__()

    def _close_meter(self) -> None:
        if self._meter is not None and self._meter._hooks is not None:
            self.last["memory/saved_activations_mib"] = self._meter.bytes / MIB
            self._meter.__exit__(None, None, None)

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        """Stop counting: what the forward saved is all the backward will use."""
        self._close_meter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        """Log the step's saved bytes and peak memory."""
        if self._meter is None:
            return
        self._close_meter()
        self._meter = None
        if pl_module.device.type == "cuda":
            self.last["memory/cuda_peak_allocated_mib"] = (
                torch.cuda.max_memory_allocated(pl_module.device) / MIB
            )
        else:
            self.last["memory/peak_rss_mib"] = peak_rss_bytes() / MIB
        pl_module.log_dict(self.last, on_step=True, on_epoch=False, batch_size=1)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Remove the saved-tensor hooks so they do not outlive a failed step."""
        self._close_meter()
        self._meter = None

"""A training order that a checkpoint resumes exactly: the sampler and the random state.

Lightning restarts an interrupted epoch with a fresh iterator of the training loader and
counts on from the batches already done: with torch's ``RandomSampler`` that iterator draws
a new permutation from the global generator, so a resumed run trains the remaining steps on
the wrong batches, and every later epoch differs. :class:`ResumableRandomSampler` draws the
very same per-epoch seed as ``RandomSampler`` (an uninterrupted run is unchanged, batch for
batch), and :class:`~lit_rev.data.base.BaseDataModule` stores in the checkpoint the epoch's
seed, the batches done and the random states needed to continue, through Lightning's
``LightningDataModule.state_dict`` / ``load_state_dict``.

The random states. A checkpoint keeps the global random states (torch, CUDA, numpy,
Python) at the save, after the last completed step and its hooks; a resumed run sets them
as it starts to read its first batch, so every later draw of the data (random transforms in
the main process) and of the steps (dropout, dequantisation noise) is the uninterrupted
run's. Where the next batch had already been read ahead before the save (a loader that
prefetches), the sampler also noted the states as that batch started to be read; the
resumed run reads that batch with those, then sets the states at the save before reading
the one after.

With worker processes (``num_workers > 0``) the batches and the main process's draws are
resumed exactly; random transforms drawn inside the workers are not (their seeds come from
the DataLoader's own iterator).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import RandomSampler

#: How many batches' noted random states the sampler keeps (the batches read ahead).
KEPT_STATES = 64


def rng_states() -> dict[str, Any]:
    """The global random states of torch (and CUDA, once initialised), numpy and Python.

    Tensors, lists and numbers only, so that a checkpoint holding them loads with
    ``torch.load(weights_only=True)``.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Set the global random states noted by :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    saved = states["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableRandomSampler(RandomSampler):
    """torch's ``RandomSampler`` (no replacement), whose place in an epoch can be resumed.

    Each epoch's permutation is drawn as ``RandomSampler`` draws it: a seed from the global
    torch generator when the epoch's first index is asked for, then ``randperm`` with a
    generator seeded by it; so an uninterrupted run sees exactly ``RandomSampler``'s order.
    Being a ``RandomSampler``, Lightning still replaces it by a ``DistributedSampler`` in a
    multi-process run.

    Args:
        data_source: the training set.
        batch_size: the loader's batch size: the sampler notes the random states as each
            batch of that many indices starts.
    """

    def __init__(self, data_source: Sized, batch_size: int):
        super().__init__(data_source)
        self.batch_size = batch_size
        #: The current epoch's seed (None before the first epoch starts).
        self.seed: int | None = None
        #: Batch index in the epoch -> the global random states as it started to be read.
        self.states_before: dict[int, dict[str, Any]] = {}
        self._resume: dict[str, Any] | None = None

    def resume(self, seed: int, batches_done: int, before_next: Any, at_save: Any) -> None:
        """Make the next epoch the interrupted one, from batch ``batches_done`` on.

        Args:
            seed: the interrupted epoch's seed.
            batches_done: the batches of it already trained.
            before_next: the random states noted before batch ``batches_done`` was read (or
                None: not known, only ``at_save`` is set).
            at_save: the random states when the checkpoint was written.
        """
        self._resume = {
            "seed": seed,
            "batches_done": batches_done,
            "before_next": before_next,
            "at_save": at_save,
        }

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        resume, self._resume = self._resume, None
        self.states_before = {}
        batches_in_epoch = n // self.batch_size if self.batch_size < n else 1
        if resume is not None and resume["batches_done"] >= batches_in_epoch:
            # saved at the end of an epoch: the next one draws its seed where it would have
            set_rng_states(resume["at_save"])
            resume = None
        if resume is None:
            self.seed = int(torch.empty((), dtype=torch.int64).random_().item())
            start = 0
        else:
            self.seed = int(resume["seed"])
            start = resume["batches_done"] * self.batch_size
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        order = torch.randperm(n, generator=generator).tolist()
        # resuming: the states at the save before the first batch is read; or, where that
        # batch had been read ahead before the save, the states it was read with, then those
        # at the save before the second batch is (or the epoch's end is found)
        pending = []
        if resume is not None:
            pending = [resume["at_save"]]
            if resume["before_next"] is not None:
                pending.append(resume["before_next"])
        for position in range(start, n):
            if position % self.batch_size == 0:
                if pending:
                    set_rng_states(pending.pop())
                batch = position // self.batch_size
                self.states_before[batch] = rng_states()
                self.states_before.pop(batch - KEPT_STATES, None)
            yield order[position]
        if pending:
            set_rng_states(pending.pop())

"""``BaseDataModule``: the batch sizes, caps, seed and loaders every lit_rev DataModule shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from lit_rev.data.resumable import ResumableRandomSampler, rng_states


class BaseDataModule(LightningDataModule):
    """What every lit_rev DataModule shares: batch sizes, seeded caps and loaders.

    A subclass builds ``train_set``, ``val_set`` (``None`` where there is no validation split)
    and ``test_set`` in ``setup``, capping them with :meth:`_cap`; the four dataloader methods
    serve them. Training loaders shuffle and drop a ragged last batch (where there is more
    than one batch), so every training step sees ``batch_size`` rows; the other loaders keep
    the data's order and every item.

    The training order resumes: checkpoints hold the epoch's shuffling seed, the batches
    done and the random states to continue from (:mod:`lit_rev.data.resumable`), so a run
    resumed from a mid-epoch checkpoint trains on the batches, with the draws, that the
    uninterrupted run would have.

    Args:
        batch_size: the training batch size (per process).
        test_batch_size: the batch size of the validation, test and prediction loaders;
            ``None`` means ``batch_size``.
        max_train: optional cap on the training split (a seeded subset) for quick runs.
        max_test: optional cap on each test split (a seeded subset).
        num_workers: worker processes of each loader; 0 loads in the main process.
        seed: seeds the caps (and whatever seeded splits a subclass makes).
    """

    #: ``collate_fn`` of every loader; ``None`` is torch's default (stacks per-item tensors).
    collate_fn: ClassVar[Callable[[Any], Any] | None] = None
    #: Whether loaders pin their batches in page-locked memory (only where CUDA is available).
    pin_memory: ClassVar[bool] = True

    def __init__(
        self,
        batch_size: int,
        test_batch_size: int | None = None,
        max_train: int | None = None,
        max_test: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        for key, value, none in (
            ("batch_size", batch_size, None),
            ("test_batch_size", test_batch_size, "the batch size"),
            ("max_train", max_train, "no cap"),
            ("max_test", max_test, "no cap"),
        ):
            if (value is None and none is None) or (value is not None and value < 1):
                alternative = f" (or None for {none})" if none else ""
                raise ValueError(f"{key} = {value}: give a whole number >= 1{alternative}")
        if num_workers < 0:
            raise ValueError(f"num_workers = {num_workers}: give 0 or more")
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size or batch_size
        self.max_train = max_train
        self.max_test = max_test
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._train_sampler: ResumableRandomSampler | None = None
        self._train_order_to_resume: dict[str, Any] | None = None

    # --- caps ---------------------------------------------------------------------------------
    def _cap(self, dataset: Any, cap: int | None, salt: int) -> Any:
        """At most ``cap`` items of ``dataset``, chosen by :meth:`_cap_indices`, in order.

        ``salt`` tells the splits apart: each split's subset is drawn with its own seed.
        """
        if cap is None or len(dataset) <= cap:
            return dataset
        return self._subset(dataset, self._cap_indices(len(dataset), cap, salt))

    def _cap_indices(self, n: int, cap: int, salt: int) -> Sequence[int]:
        """``cap`` of ``range(n)``, sorted: the start of a permutation seeded with seed + salt."""
        g = torch.Generator().manual_seed(self.seed + salt)
        return torch.randperm(n, generator=g)[:cap].sort().values.tolist()

    def _subset(self, dataset: Any, indices: Sequence[int]) -> Any:
        """The items ``indices`` of ``dataset``."""
        return Subset(dataset, indices)

    # --- loaders ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False) -> DataLoader:
        """The project's DataLoader: ``shuffle`` for training, which also drops a ragged batch.

        The shuffling is a :class:`~lit_rev.data.resumable.ResumableRandomSampler` (the order
        of torch's ``shuffle=True``, resumable from a checkpoint).
        """
        sampler = None
        if shuffle:
            sampler = ResumableRandomSampler(dataset, batch_size)
            self._train_sampler = sampler
            if self._train_order_to_resume is not None:
                sampler.resume(**self._train_order_to_resume)
                self._train_order_to_resume = None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            drop_last=shuffle and len(dataset) > batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; a ragged last batch is dropped."""
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in order, or none (an empty list) without a validation split."""
        return self._loader(self.val_set, self.test_batch_size) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Test batches in order."""
        return self._loader(self.test_set, self.test_batch_size)

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test loaders: prediction scores the same sets."""
        return self.test_dataloader()

    # --- checkpoints: where the training order stands ----------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The training order's place, for Lightning to store in a checkpoint of a fit.

        Empty where this process's training loader has not shuffled (not fitting yet, or a
        multi-process run, where Lightning's ``DistributedSampler`` orders the data).
        """
        sampler = self._train_sampler
        trainer = self.trainer
        if sampler is None or sampler.seed is None or trainer is None:
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return {
            "train_order": {
                "seed": sampler.seed,
                "batches_done": done,
                "before_next": sampler.states_before.get(done),
                "at_save": rng_states(),
            }
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training order stored by :meth:`state_dict` in the next training epoch."""
        order = state_dict.get("train_order")
        if order is not None:  # Lightning restores before it asks for the training loader
            self._train_order_to_resume = dict(order)

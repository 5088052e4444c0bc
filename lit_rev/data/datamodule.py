"""``ImageDataModule``: one in-distribution image set plus any number of named OOD sets."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lit_rev.data.base import BaseDataModule
from lit_rev.data.files import DataFileError
from lit_rev.data.images import ImageSource
from lit_rev.data.transforms import (
    Augmentation,
    Grayed,
    MappedDataset,
    augment,
    convert,
    map_images,
    quantize,
)
from lit_rev.options import check_choice

# Which split of the OOD sources is tested: their test split, or all of their images.
OODSplit = Literal["test", "all"]


class ImageDataModule(BaseDataModule):
    """Serves ``(x, y)`` batches: ``x`` uint8 ``(B, C, H, W)`` with values in ``[0, 2**n_bits)``.

    Args:
        dataset: the in-distribution source; its ``train`` split is split into train/val
            with a seeded permutation, its ``test`` split is the first test set.
        ood: out-of-distribution sources; each becomes its own named test dataloader, in
            order, after the in-distribution one. A :class:`Grayed` without a source grays
            the in-distribution set.
        channels: the common number of channels (default: the in-distribution set's).
        image_size: the common height and width (default: the in-distribution set's).
        n_bits: quantisation depth (Glow on CelebA uses 5).
        batch_size: the training batch size (per process).
        test_batch_size: the validation and test batch size (default: ``batch_size``).
        val_fraction: part of the training split held out for validation.
        max_train: optional cap on the training split (a seeded subset) for quick runs.
        max_test: optional cap on each test set, OOD sets included (seeded subsets).
        ood_split: which split of the OOD sources to test on (``test`` or ``all``).
        augment: ``none``, ``flip`` or ``crop_flip``; only ever applied to the training split.
        num_workers: worker processes of each loader; 0 loads in the main process.
        seed: seeds the train/val split and the caps.

    ``test_set`` is the in-distribution test set; ``test_sets`` holds it and the OOD sets.

    Every split a stage reads is opened (and checksummed, where the set has checksums) in
    :meth:`prepare_data` and again, from the sources' caches, in :meth:`setup`: for ``fit``
    that is the training split *and* every test and OOD set, so a missing or corrupt OOD file
    stops the run before its first training step, not after training when the OOD evaluation
    reads it.
    """

    def __init__(
        self,
        dataset: ImageSource,
        ood: list[ImageSource] | None = None,
        channels: int | None = None,
        image_size: int | None = None,
        n_bits: int = 8,
        batch_size: int = 64,
        test_batch_size: int | None = None,
        val_fraction: float = 0.1,
        max_train: int | None = None,
        max_test: int | None = None,
        ood_split: OODSplit = "test",
        augment: Augmentation = "none",
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            max_train=max_train,
            max_test=max_test,
            num_workers=num_workers,
            seed=seed,
        )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        check_choice("augment", augment, Augmentation)
        check_choice("ood_split", ood_split, OODSplit)
        quantize(torch.zeros(1, dtype=torch.uint8), n_bits)  # validates n_bits
        self.source = dataset
        # A Grayed without a source grays the in-distribution *test* split.
        self._ood_splits = [
            "test" if isinstance(s, Grayed) and s.source is None else ood_split for s in ood or []
        ]
        self.ood_sources = [
            Grayed(dataset, s.factor, s._name) if isinstance(s, Grayed) and s.source is None else s
            for s in ood or []
        ]
        self.channels = channels
        self.image_size = image_size
        self.n_bits = n_bits
        self.val_fraction = val_fraction
        self.ood_split = ood_split
        self.augment = augment
        self.test_names = _unique([self.source.name] + [s.name for s in self.ood_sources])
        self.test_sets: list[Dataset] = []

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every batch; reads the in-distribution set if not given."""
        if self.channels is None or self.image_size is None:
            x, _ = self.source.dataset("test")[0]
            self.channels = self.channels or int(x.shape[0])
            self.image_size = self.image_size or int(x.shape[-1])
        return (self.channels, self.image_size, self.image_size)

    @property
    def num_classes(self) -> int:
        """Number of classes of the in-distribution set (its largest training label plus one)."""
        labels = getattr(self.source.dataset("train"), "labels", None)
        if labels is None:
            raise AttributeError(f"{self.source.name} does not expose labels")
        return int(labels.max()) + 1

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ``(mean, std)`` on the ``[0, 1]`` scale of the in-distribution set.

        They are for a classifier's input normalisation: the set's published values, never
        another set's.

        Raises:
            ValueError: naming the set, where it has none or where this DataModule converts its
                channels (the statistics would then not apply): give the model's ``mean``/``std``.
        """
        stats = self.source.channel_stats
        if stats is None:
            raise ValueError(
                f"the in-distribution set {self.source.name!r} has no published channel "
                "statistics; set the model's mean and std (model.init_args.mean/std in the config)"
            )
        if self.channels is not None and self.channels != len(stats[0]):
            raise ValueError(
                f"the statistics of {self.source.name!r} are for {len(stats[0])} channel(s), but "
                f"channels={self.channels}; set the model's mean and std for the converted images"
            )
        return stats

    def _prepare(self, dataset: Dataset) -> Dataset:
        c, s, _ = self.shape
        return map_images(dataset, lambda x: quantize(convert(x, c, s), self.n_bits))

    def _sources_of(self, stage: str | None) -> list[tuple[ImageSource, str]]:
        """``(source, split)`` of every set ``stage`` reads.

        ``fit`` ends with the OOD evaluation, so it reads the test and OOD sets too.
        """
        read = []
        if stage in (None, "fit", "validate"):
            read.append((self.source, "train"))
        if stage in (None, "fit", "test", "predict"):
            read.append((self.source, "test"))
            read.extend(zip(self.ood_sources, self._ood_splits, strict=True))
        return read

    def verify(self, stage: str | None = None) -> None:
        """Open every split ``stage`` reads (all of them for ``fit`` or None).

        Raises:
            DataFileError: one error naming every set and file found at fault.
        """
        problems = []
        for source, split in self._sources_of(stage):
            try:
                source.verify(split)
            except DataFileError as err:
                role = "in-distribution set" if source is self.source else "OOD set"
                problems.append(f"{role} {source.name!r}, {split} split: {err}")
        if len(problems) == 1:
            raise DataFileError(problems[0])
        if problems:
            lines = "\n".join(problems)
            raise DataFileError(f"{len(problems)} data sets cannot be read:\n{lines}")

    def prepare_data(self) -> None:
        """Download (where a source may) and verify what the trainer's coming stage reads.

        Runs on one process per node before :meth:`setup`, so processes do not race to download.
        """
        trainer = getattr(self, "trainer", None)
        fn = trainer.state.fn if trainer is not None else None
        stage = fn.value if fn is not None else None
        self.verify(stage)

    def setup(self, stage: str | None = None) -> None:
        """Build the seeded train/val split (``fit``, ``validate``) and the capped test sets."""
        self.verify(stage)  # every process; the sources' caches make a second call cheap
        if stage in (None, "fit", "validate") and self.train_set is None:
            full = self._prepare(self.source.dataset("train"))
            g = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(full), generator=g).tolist()
            n_val = round(len(full) * self.val_fraction)
            train = self._cap(Subset(full, order[n_val:]), self.max_train, 1)
            self.train_set = (
                MappedDataset(train, partial(augment, kind=self.augment))
                if self.augment != "none"
                else train
            )
            self.val_set = Subset(full, order[:n_val]) if n_val else None
        if stage in (None, "test", "predict") and not self.test_sets:
            sets = [self.source.dataset("test")] + [
                s.dataset(sp) for s, sp in zip(self.ood_sources, self._ood_splits, strict=True)
            ]
            self.test_sets = [
                self._cap(self._prepare(ds), self.max_test, 2 + i) for i, ds in enumerate(sets)
            ]
            self.test_set = self.test_sets[0]

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per test set: the in-distribution set, then the OOD sets in order."""
        return [self._loader(ds, self.test_batch_size) for ds in self.test_sets]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out

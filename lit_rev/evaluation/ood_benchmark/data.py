"""The benchmark's data, as every entry sees it: the test sets and the training split."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from lit_rev.evaluation.ood_benchmark.models import BenchmarkError

#: Scores of one detector: ``{label: {set name: (N,) tensor}}``, label ``<name>/<score>``.
Scores = dict[str, dict[str, torch.Tensor]]


class OnDevice:
    """A loader whose batches ``(x, y)`` come on ``device``; iterable any number of times."""

    def __init__(self, loader: Iterable, device: torch.device):
        self.loader = loader
        self.device = device

    def __iter__(self) -> Iterator:
        for x, y in self.loader:
            yield x.to(self.device), y.to(self.device)

    def __len__(self) -> int:
        return len(self.loader)


class BenchmarkData:
    """The benchmark's DataModule, set up: test sets (in-distribution first) and training split.

    Args:
        datamodule: an ``ImageDataModule`` (or any DataModule with ``test_names``).
        max_images: cap on every test set (a seeded subset, as the DataModule's own
            ``max_test``); the training split detectors fit on is the DataModule's own (its
            ``max_train`` caps it).
    """

    def __init__(self, datamodule: LightningDataModule, max_images: int | None = None):
        if max_images is not None:
            own = getattr(datamodule, "max_test", None)
            datamodule.max_test = max_images if own is None else min(own, max_images)
        self.datamodule = datamodule
        datamodule.setup("fit")
        datamodule.setup("test")
        self.names: list[str] = list(datamodule.test_names)
        if len(self.names) < 2:
            raise BenchmarkError(
                f"data: the benchmark needs OOD sets (data.init_args.ood), got only {self.names}"
            )
        self.in_name = self.names[0]
        self.ood_names = self.names[1:]
        self.test_loaders = datamodule.test_dataloader()
        self.batch_size = getattr(datamodule, "test_batch_size", None) or 64

    def describe(self) -> dict:
        """Set sizes, for the report's metadata."""
        return {
            name: len(loader.dataset)
            for name, loader in zip(self.names, self.test_loaders, strict=True)
        }

    def train_loader(self) -> DataLoader:
        """The training split in order (every image, no shuffling): what detectors fit on."""
        dm = self.datamodule
        return DataLoader(dm.train_set, batch_size=self.batch_size, shuffle=False)

    def reference_loader(self) -> Iterable:
        """Held-out in-distribution data (the validation split, else the training split)."""
        loader = self.datamodule.val_dataloader()
        return loader if loader else self.train_loader()

    def batches(self, progress: bool, what: str) -> Iterator[tuple[str, torch.Tensor]]:
        """``(set name, images)`` over every test set, with a progress bar per set."""
        from rich.progress import track

        for name, loader in zip(self.names, self.test_loaders, strict=True):
            for x, _ in track(
                loader, description=f"{what}: {name}", transient=True, disable=not progress
            ):
                yield name, x


def concat_scores(parts: dict[str, dict[str, list[torch.Tensor]]]) -> Scores:
    """``{label: {set: [batch scores, ...]}}`` as ``{label: {set: (N,) float64 CPU tensor}}``."""
    return {
        label: {name: torch.cat(values).detach().double().cpu() for name, values in sets.items()}
        for label, sets in parts.items()
    }

"""ImageNet (ILSVRC-2012) from an ``ImageFolder`` tree, as uint8 batches like every other set.

Layout: ``<root>/imagenet/train/<wnid>/*.JPEG`` and ``<root>/imagenet/val/<wnid>/*.JPEG``
(the validation images sorted into class folders), ``root`` defaulting to ``$LIT_REV_DATA``.
Training images get a random-resized crop and a horizontal flip; validation images are
resized to 256 and centre-cropped to 224. The validation split is also the test split.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lit_rev.data.datamodule import make_loader, seeded_subset
from lit_rev.data.files import DataFileError
from lit_rev.data.vision import default_root


def _transforms(train: bool, image_size: int, resize: int):
    from torchvision.transforms import v2

    if train:
        steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.PILToTensor(), v2.RGB(), *steps])


class ImageNetDataModule(LightningDataModule):
    """Serves ``(x, y)``: ``x`` uint8 ``(B, 3, image_size, image_size)``, ``y`` int64 class indices.

    Args:
        root: directory holding ``imagenet/``; default ``$LIT_REV_DATA`` (or ``./data``).
        batch_size, test_batch_size: per-process batch sizes.
        image_size, resize: crop size, and the shorter side validation images are resized to.
        max_train, max_val: optional seeded subsets for quick runs.
    """

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 256,
        test_batch_size: int | None = None,
        image_size: int = 224,
        resize: int = 256,
        max_train: int | None = None,
        max_val: int | None = None,
        num_workers: int = 8,
        seed: int = 0,
    ):
        super().__init__()
        self.root = root
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size or batch_size
        self.image_size = image_size
        self.resize = resize
        self.max_train = max_train
        self.max_val = max_val
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def directory(self) -> Path:
        """``<root>/imagenet``, the folder holding the ``train`` and ``val`` class folders."""
        return Path(self.root if self.root is not None else default_root()) / "imagenet"

    def _folder(self, split: str, train: bool) -> Dataset:
        from torchvision.datasets import ImageFolder

        path = self.directory / split
        try:
            return ImageFolder(
                str(path), transform=_transforms(train, self.image_size, self.resize)
            )
        except (FileNotFoundError, RuntimeError) as err:
            raise DataFileError(f"ImageNet {split} split not found under {path}: {err}") from err

    def _cap(self, dataset: Dataset, cap: int | None, salt: int) -> Dataset:
        return seeded_subset(dataset, cap, self.seed + salt)

    @property
    def num_classes(self) -> int:
        """Number of class folders of the validation split (1,000 for ILSVRC-2012)."""
        return len(self._folder("val", train=False).classes)

    def setup(self, stage: str | None = None) -> None:
        """Open the training folder (``fit``) and the validation folder, capped where asked."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._cap(self._folder("train", train=True), self.max_train, 1)
        if self.val_set is None:
            self.val_set = self._cap(self._folder("val", train=False), self.max_val, 2)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return make_loader(dataset, batch_size, shuffle, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches; a ragged last batch is dropped."""
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Centre-cropped validation batches in order."""
        return self._loader(self.val_set, self.test_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The validation loader: ILSVRC-2012's validation split is its test split."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation loader."""
        return self.val_dataloader()

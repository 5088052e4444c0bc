"""ImageNet (ILSVRC-2012) from an ``ImageFolder`` tree, as uint8 batches like every other set.

Layout: ``<root>/imagenet/train/<wnid>/*.JPEG`` and ``<root>/imagenet/val/<wnid>/*.JPEG``
(the validation images sorted into class folders), ``root`` defaulting to ``$LIT_REV_DATA``.
Training images get a random-resized crop and a horizontal flip; validation images are
resized to 256 and centre-cropped to 224. The validation split is also the test split.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from lit_rev.data.base import BaseDataModule
from lit_rev.data.files import DataFileError
from lit_rev.data.vision import default_root


def _transforms(train: bool, image_size: int, resize: int):
    from torchvision.transforms import v2

    if train:
        steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.PILToTensor(), v2.RGB(), *steps])


class ImageNetDataModule(BaseDataModule):
    """Serves ``(x, y)``: ``x`` uint8 ``(B, 3, image_size, image_size)``, ``y`` int64 class indices.

    Args:
        root: directory holding ``imagenet/``; default ``$LIT_REV_DATA`` (or ``./data``).
        batch_size: the training batch size (per process).
        test_batch_size: the validation batch size (default: ``batch_size``).
        image_size: the crop size.
        resize: the shorter side validation images are resized to before the centre crop.
        max_train: optional cap on the training split (a seeded subset) for quick runs.
        max_val: optional cap on the validation split (a seeded subset).
        num_workers: worker processes of each loader (JPEG decoding is the bottleneck).
        seed: seeds the caps.

    The validation split is also ``test_set``: ILSVRC-2012's validation split is its test split.
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
        super().__init__(
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            max_train=max_train,
            max_test=max_val,
            num_workers=num_workers,
            seed=seed,
        )
        self.root = root
        self.image_size = image_size
        self.resize = resize

    @property
    def max_val(self) -> int | None:
        """The cap of the validation split, which is also the test split (``max_test``)."""
        return self.max_test

    @max_val.setter
    def max_val(self, cap: int | None) -> None:
        self.max_test = cap

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
            self.test_set = self.val_set

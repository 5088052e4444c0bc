"""The torchvision image sets, with their real download path.

``root`` defaults to ``$LIT_REV_DATA`` (or ``./data``). With ``download=True`` torchvision
fetches a missing set from its public mirror; without a network, a missing or corrupt set
raises :class:`~lit_rev.data.files.DataFileError` naming the directory it looked in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_rev.data.files import DataFileError
from lit_rev.data.images import ImageSource, ImageTensors


def default_root() -> str:
    return os.environ.get("LIT_REV_DATA", "data")


class TorchvisionSource(ImageSource):
    """Base of the torchvision-backed sets: ``train`` and ``test`` splits."""

    def __init__(self, root: str | None = None, download: bool = True, name: str | None = None):
        super().__init__(name)
        self.root = root
        self.download = download
        self._cache: dict[str, Dataset] = {}

    @property
    def resolved_root(self) -> Path:
        return Path(self.root if self.root is not None else default_root())

    def _open(self, split: str):
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        self._check_split(split, ("train", "test"))
        if split not in self._cache:
            try:
                self._cache[split] = self._open(split)
            except (RuntimeError, OSError, ValueError) as err:
                hint = "" if self.download else " (download=False)"
                raise DataFileError(
                    f"{type(self).__name__} {split} split not found or corrupt under {self.resolved_root}{hint}: {err}"
                ) from err
        return self._cache[split]


def _hwc_to_tensors(data: np.ndarray, labels) -> ImageTensors:
    images = torch.from_numpy(np.ascontiguousarray(data))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    elif images.shape[-1] in (1, 3):
        images = images.permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.as_tensor(np.asarray(labels), dtype=torch.long))


class MNIST(TorchvisionSource):
    """LeCun's MNIST (60k/10k 28x28 digits), via ``torchvision.datasets.MNIST``."""

    _cls = "MNIST"

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = getattr(tvd, self._cls)(str(self.resolved_root), train=split == "train", download=self.download)
        return ImageTensors(ds.data.unsqueeze(1).to(torch.uint8).contiguous(), ds.targets.long())


class FashionMNIST(MNIST):
    """Zalando's FashionMNIST (60k/10k 28x28 clothes), via ``torchvision.datasets.FashionMNIST``."""

    _cls = "FashionMNIST"


class CIFAR10(TorchvisionSource):
    """CIFAR-10 (50k/10k 32x32 RGB), via ``torchvision.datasets.CIFAR10``."""

    _cls = "CIFAR10"

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = getattr(tvd, self._cls)(str(self.resolved_root), train=split == "train", download=self.download)
        return _hwc_to_tensors(ds.data, ds.targets)


class CIFAR100(CIFAR10):
    """CIFAR-100 (50k/10k 32x32 RGB, 100 classes), via ``torchvision.datasets.CIFAR100``."""

    _cls = "CIFAR100"


class SVHN(TorchvisionSource):
    """Street View House Numbers (73k/26k 32x32 RGB), via ``torchvision.datasets.SVHN`` (needs scipy)."""

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = tvd.SVHN(str(self.resolved_root), split=split, download=self.download)
        return ImageTensors(torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels).long())


class _CelebAImages(Dataset):
    """Lazy CelebA: decodes each JPEG on access, centre-crops to ``crop`` pixels."""

    def __init__(self, ds, crop: int):
        self.ds, self.crop = ds, crop

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        import torchvision.transforms.functional as TF

        img, _ = self.ds[i]
        x = TF.pil_to_tensor(img)
        if self.crop:
            x = TF.center_crop(x, [self.crop, self.crop])
        return x, -1


class CelebA(TorchvisionSource):
    """Aligned CelebA faces (162,770 train / 19,962 test, 178x218 RGB), via ``torchvision.datasets.CelebA``.

    Images are centre-cropped to ``crop`` pixels (148, as in Glow and most CelebA models)
    and decoded lazily; the DataModule then resizes them (to 64 for the paper's Glow).
    """

    def __init__(self, root: str | None = None, download: bool = True, crop: int = 148, name: str | None = None):
        super().__init__(root, download, name)
        self.crop = crop

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = tvd.CelebA(str(self.resolved_root), split=split, target_type=[], download=self.download)
        return _CelebAImages(ds, self.crop)

"""Image sets as *sources*: named objects that hand out uint8 ``(C, H, W)`` images per split.

A source knows nothing about the model's input shape or bit depth; :class:`~lit_rev.data.
datamodule.ImageDataModule` converts every source to one shape, so any set can be the
in-distribution set or an out-of-distribution set for any other.

Every dataset returned by :meth:`ImageSource.dataset` yields ``(image, label)`` with
``image`` a ``torch.uint8`` tensor of shape ``(C, H, W)`` and ``label`` an ``int``
(``-1`` where a set has no labels).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_rev.data.files import DataFileError, shipped_file

SPLITS = ("train", "test", "all")


class ImageTensors(Dataset):
    """An in-memory image set: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and len(labels) != len(images):
            raise ValueError(
                f"{len(images)} images but {len(labels)} labels: an image set needs one label "
                "per image (or no labels at all)"
            )
        self.images = images
        self.labels = (
            labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class ImageSource:
    """Base class of every image set. Subclasses implement :meth:`dataset`.

    ``channel_stats`` holds a set's published per-channel pixel ``(mean, std)`` on the
    ``[0, 1]`` scale (``None`` where the project has none), for a classifier's input
    normalisation; see :meth:`~lit_rev.data.datamodule.ImageDataModule.channel_stats`.
    """

    channel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __init__(self, name: str | None = None):
        self._name = name

    @property
    def name(self) -> str:
        """The name given, or the class name in lower case; it labels the set's test results."""
        return self._name or type(self).__name__.lower()

    def dataset(self, split: str) -> Dataset:
        """The ``split`` as a Dataset of ``(image, label)``; every subclass implements it."""
        raise NotImplementedError

    def verify(self, split: str) -> None:
        """Open ``split`` now, reading (and checksumming, where the set has checksums) its files.

        A missing or corrupt file then fails before training rather than after it. Sources that
        cache what they read (all of the project's) keep it for :meth:`dataset`.
        """
        self.dataset(split)

    @staticmethod
    def _check_split(split: str, allowed: Sequence[str] = SPLITS) -> None:
        if split not in allowed:
            raise ValueError(f"unknown split {split!r}; expected one of {tuple(allowed)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class InMemorySource(ImageSource):
    """A source whose whole set fits in memory.

    Subclasses implement :meth:`load_all` and, where the last ``test_fraction`` is not the
    right test split, :meth:`is_test`.
    """

    test_fraction: float = 0.2

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def load_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image (uint8 N,C,H,W) and label, in a fixed order."""
        raise NotImplementedError

    def is_test(self, n: int) -> torch.Tensor:
        """Boolean mask of the test images; by default the last ``test_fraction`` of the set."""
        mask = torch.zeros(n, dtype=torch.bool)
        mask[n - round(n * self.test_fraction) :] = True
        return mask

    def dataset(self, split: str) -> ImageTensors:
        """The ``train``, ``test`` or ``all`` images, loaded once and kept in memory."""
        self._check_split(split)
        if self._cache is None:
            images, labels = self.load_all()
            if labels is None:
                labels = torch.full((len(images),), -1, dtype=torch.long)
            self._cache = (images, labels, self.is_test(len(images)))
        images, labels, test = self._cache
        if split == "all":
            return ImageTensors(images, labels)
        keep = test if split == "test" else ~test
        return ImageTensors(images[keep], labels[keep])


def _to_uint8(array: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(
        np.clip(np.rint(np.asarray(array, dtype=np.float64) * scale), 0, 255).astype(np.uint8)
    )


class MNIST5k(InMemorySource):
    """5,000 real MNIST digits (500 per class) shipped with the package, checksum verified on load.

    ``channel_stats`` are full MNIST's published values, which the quick configs use.

    The file is sorted by label, so the test split is a fixed stratified choice: 100 digits of
    each class picked by a seeded permutation (1,000 in all); the other 4,000 are for training.
    """

    channel_stats = ((0.1307,), (0.3081,))

    def load_all(self):
        """The 5,000 digits of the shipped CSV, sorted by label, after its checksum check."""
        path = shipped_file("mnist_5k.csv.gz")
        try:
            with gzip.open(path, "rb") as f:
                table = np.loadtxt(io.BytesIO(f.read()), delimiter=",", dtype=np.int64)
        except (OSError, ValueError, EOFError) as err:
            raise DataFileError(f"cannot parse {path}: {err}") from err
        if table.ndim != 2 or table.shape[1] != 785:
            raise DataFileError(
                f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}"
            )
        images = torch.from_numpy(table[:, :784].astype(np.uint8)).reshape(-1, 1, 28, 28)
        self._labels = torch.from_numpy(table[:, 784])
        return images, self._labels

    def is_test(self, n):
        """A seeded fifth of each class (the file is sorted by label, so not the last fifth)."""
        labels = self._labels
        mask = torch.zeros(n, dtype=torch.bool)
        generator = torch.Generator().manual_seed(0)
        for c in labels.unique():
            members = torch.nonzero(labels == c).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            mask[members[: len(members) // 5]] = True
        return mask


class Digits(InMemorySource):
    """scikit-learn's 1,797 real 8x8 handwritten digits (16 gray levels, rescaled to 0-255)."""

    def load_all(self):
        """scikit-learn's digits, rescaled from 16 gray levels to 0-255, with their labels."""
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = _to_uint8(bunch.images, 255.0 / 16.0).unsqueeze(1)
        return images, torch.from_numpy(bunch.target.astype(np.int64))


class LFWCrops(InMemorySource):
    """scikit-image's 200 real 25x25 gray crops: 100 faces (label 1) then 100 non-faces (label 0).

    The test split is a fixed, seeded fifth of the set, half faces and half non-faces.
    """

    def load_all(self):
        """The crops rescaled to 0-255, faces labelled 1 and non-faces 0."""
        from skimage import data

        crops = np.asarray(data.lfw_subset(), dtype=np.float64)
        images = _to_uint8(crops, 255.0).unsqueeze(1)
        labels = torch.cat([torch.ones(100, dtype=torch.long), torch.zeros(100, dtype=torch.long)])
        return images, labels

    def is_test(self, n):
        """A seeded ``test_fraction`` of the faces and the same of the non-faces."""
        generator = torch.Generator().manual_seed(0)
        mask = torch.zeros(n, dtype=torch.bool)
        half = n // 2
        for start in (0, half):
            pick = torch.randperm(half, generator=generator)[: round(half * self.test_fraction)]
            mask[start + pick] = True
        return mask


NATURAL_PHOTOS = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
    "immunohistochemistry",
    "hubble_deep_field",
)


class NaturalPatches(InMemorySource):
    """Square patches cut on a fixed grid from scikit-image's bundled photographs.

    Each photo is (optionally) downscaled, then its left ``1 - test_fraction`` of columns gives
    the training patches and the right band the test patches, so no test patch overlaps a
    training patch. ``rgb=False`` converts colour photos to luminance.
    """

    def __init__(
        self,
        patch_size: int = 28,
        stride: int = 14,
        photos: Sequence[str] = NATURAL_PHOTOS,
        rgb: bool = False,
        downscale: float = 2.0,
        test_fraction: float = 0.2,
        name: str | None = None,
    ):
        super().__init__(name)
        if patch_size < 2 or stride < 1 or downscale < 1.0 or not 0.0 < test_fraction < 1.0:
            raise ValueError(
                "need patch_size >= 2, stride >= 1, downscale >= 1 and 0 < test_fraction < 1"
            )
        self.patch_size = patch_size
        self.stride = stride
        self.photos = tuple(photos)
        self.rgb = rgb
        self.downscale = downscale
        self.test_fraction = test_fraction

    def _photo(self, name: str) -> torch.Tensor:
        from skimage import data

        loader = getattr(data, name, None)
        if loader is None:
            raise ValueError(f"scikit-image has no bundled photo {name!r}")
        img = np.asarray(loader())
        if img.dtype != np.uint8:
            img = _to_uint8(img / max(float(img.max()), 1e-12), 255.0).numpy()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).float()
        if self.downscale > 1.0:
            size = [max(self.patch_size, int(s / self.downscale)) for s in t.shape[1:]]
            t = torch.nn.functional.interpolate(t[None], size=size, mode="area")[0]
        if not self.rgb:
            t = to_gray(t)
        return t.round().clamp(0, 255).to(torch.uint8)

    def load_all(self):
        """Not used: the patches are split per photo, in :meth:`dataset`."""
        raise NotImplementedError

    def dataset(self, split: str) -> ImageTensors:
        """Patches of the ``train`` band, the ``test`` band, or ``all``; cut once, then cached."""
        self._check_split(split)
        if self._cache is None:
            parts = {"train": [], "test": []}
            p, s = self.patch_size, self.stride
            for label, name in enumerate(self.photos):
                photo = self._photo(name)
                width = photo.shape[2]
                cut = round(width * (1 - self.test_fraction))
                for part, band in (("train", photo[:, :, :cut]), ("test", photo[:, :, cut:])):
                    if band.shape[1] < p or band.shape[2] < p:
                        continue
                    patches = band.unfold(1, p, s).unfold(2, p, s)  # C, nh, nw, p, p
                    patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, band.shape[0], p, p)
                    parts[part].append((patches, torch.full((len(patches),), label)))
            tensors = {
                k: (torch.cat([a for a, _ in v]), torch.cat([b for _, b in v]))
                for k, v in parts.items()
            }
            images = torch.cat([tensors["train"][0], tensors["test"][0]])
            labels = torch.cat([tensors["train"][1], tensors["test"][1]])
            test = torch.cat(
                [
                    torch.zeros(len(tensors["train"][0]), dtype=torch.bool),
                    torch.ones(len(tensors["test"][0]), dtype=torch.bool),
                ]
            )
            self._cache = (images.contiguous(), labels, test)
        return super().dataset(split)


class ConstantImages(InMemorySource):
    """``n`` images of one random colour each (a classic OOD sanity set), seeded."""

    def __init__(self, n: int = 500, size: int = 32, seed: int = 0, name: str | None = None):
        super().__init__(name)
        self.n = n
        self.size = size
        self.seed = seed

    def load_all(self):
        """``n`` images, each filled with one seeded random RGB colour; no labels."""
        colours = torch.randint(
            0,
            256,
            (self.n, 3, 1, 1),
            generator=torch.Generator().manual_seed(self.seed),
            dtype=torch.uint8,
        )
        return colours.expand(-1, -1, self.size, self.size).contiguous(), None


class UniformNoise(InMemorySource):
    """``n`` images of independent uniform pixels, seeded."""

    def __init__(self, n: int = 500, size: int = 32, seed: int = 0, name: str | None = None):
        super().__init__(name)
        self.n = n
        self.size = size
        self.seed = seed

    def load_all(self):
        """``n`` RGB images of seeded uniform pixels in 0..255; no labels."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randint(
            0, 256, (self.n, 3, self.size, self.size), generator=g, dtype=torch.uint8
        ), None


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luminance of float ``(..., 3, H, W)``; keeps the channel dim."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)

"""Shape conversion, quantisation, graying, flipping and augmentation of uint8 image tensors."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lit_rev.data.images import ImageSource, ImageTensors, to_gray
from lit_rev.options import check_choice

# Train-time augmentations of :func:`augment` (and ``ImageDataModule``'s ``augment``).
Augmentation = Literal["none", "flip", "crop_flip"]


def convert(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Convert uint8 ``(N, C, H, W)`` (or ``(C, H, W)``) to ``channels`` x ``size`` x ``size``.

    Gray to RGB repeats the channel; RGB to gray takes ITU-R 601 luminance. A non-square
    image is centre-cropped to a square first; resizing is antialiased bilinear.
    """
    single = images.dim() == 3
    x = images[None] if single else images
    if x.shape[1] not in (1, 3) or channels not in (1, 3):
        raise ValueError(
            f"can only convert between 1 and 3 channels, got {x.shape[1]} -> {channels}"
        )
    h, w = x.shape[-2:]
    if (x.shape[1], h, w) != (channels, size, size):
        x = x.float()
        if h != w:
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            x = x[..., top : top + s, left : left + s]
        if x.shape[-1] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        if x.shape[1] == 3 and channels == 1:
            x = to_gray(x)
        elif x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x[0] if single else x.contiguous()


def quantize(images: torch.Tensor, n_bits: int) -> torch.Tensor:
    """Keep the ``n_bits`` most significant bits of uint8 pixels: values in ``[0, 2**n_bits)``."""
    if not 1 <= n_bits <= 8:
        raise ValueError(f"n_bits must be in 1..8, got {n_bits}")
    return images >> (8 - n_bits) if n_bits < 8 else images


def gray_images(images: torch.Tensor, factor: float, mean: torch.Tensor) -> torch.Tensor:
    """Shrink pixel deviations from the per-channel ``mean`` by ``factor``.

    Returns ``mean + factor * (x - mean)``, rounded back to uint8.
    """
    x = mean + factor * (images.float() - mean)
    return x.round().clamp(0, 255).to(torch.uint8)


class MappedDataset(Dataset):
    """Applies ``fn`` to the image of every ``(image, label)`` item of ``base``, lazily."""

    def __init__(self, base: Dataset, fn):
        self.base = base
        self.fn = fn

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.fn(x), y


def map_images(dataset: Dataset, fn) -> Dataset:
    """``fn`` applied to every image: at once for an in-memory set, lazily otherwise."""
    if isinstance(dataset, ImageTensors):
        return ImageTensors(fn(dataset.images), dataset.labels)
    return MappedDataset(dataset, fn)


class Grayed(ImageSource):
    """Another source with its pixels shrunk toward the set's per-channel mean by ``factor``.

    ``factor=1`` is the source itself, ``0`` a constant image at the mean. Without a ``source``
    the DataModule uses its in-distribution set, which gives the paper's grayed test set.
    """

    def __init__(
        self, source: ImageSource | None = None, factor: float = 0.5, name: str | None = None
    ):
        super().__init__(name)
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"factor must be in [0, 1], got {factor}")
        self.source = source
        self.factor = factor

    @property
    def name(self) -> str:
        """The name given, or ``<source>-gray<factor>`` (``in-distribution`` without a source)."""
        if self._name:
            return self._name
        base = self.source.name if self.source is not None else "in-distribution"
        return f"{base}-gray{self.factor:g}"

    def verify(self, split: str) -> None:
        """Verify the source's ``split``, whose files are the ones read."""
        self._require_source()
        self.source.verify(split)

    def _require_source(self) -> None:
        if self.source is None:
            raise ValueError(
                "Grayed has no source; give one or use it inside an ImageDataModule's `ood`"
            )

    def dataset(self, split: str) -> Dataset:
        """The source's ``split``, grayed toward that split's own channel mean."""
        self._require_source()
        base = self.source.dataset(split)
        mean = channel_mean(base)
        return map_images(base, lambda x: gray_images(x, self.factor, mean))


# Which split of its source an :class:`UpsideDown` reads, whatever split it is asked for.
SourceSplit = Literal["train", "test", "all"]


def upside_down(images: torch.Tensor) -> torch.Tensor:
    """``images`` (``(..., H, W)``) flipped vertically: row ``i`` becomes row ``H - 1 - i``."""
    return images.flip(-2)


class UpsideDown(ImageSource):
    """Another source's images flipped upside down: a near-OOD set.

    The flip is vertical (rows reversed, columns kept), not a 180-degree rotation. Digits such
    as 0, 1 and 8 look alike either way up while 2, 4 or 7 do not, so a model of upright digits
    sees images close to its training set: a near-OOD set, harder to detect than unrelated ones.
    Labels are the source's.

    Args:
        source: the set to flip, e.g. the in-distribution set's own source.
        split: the source's split to read whatever split is asked for (e.g. ``test``, so that
            flipped in-distribution training images never enter the OOD set), or None to read
            the split asked for.
        name: the set's name in reports; by default ``<source>-upsidedown``.
    """

    def __init__(
        self, source: ImageSource, split: SourceSplit | None = None, name: str | None = None
    ):
        super().__init__(name)
        if not isinstance(source, ImageSource):
            raise TypeError(
                f"UpsideDown source must be an ImageSource, got {type(source).__name__}; "
                "give one, e.g. source: MNIST5k"
            )
        if split is not None:
            check_choice("split", split, SourceSplit)
        self.source = source
        self.split = split

    @property
    def name(self) -> str:
        """The name given, or ``<source>-upsidedown``."""
        return self._name or f"{self.source.name}-upsidedown"

    def _source_split(self, split: str) -> str:
        return self.split if self.split is not None else split

    def verify(self, split: str) -> None:
        """Verify the source's split that :meth:`dataset` reads."""
        self.source.verify(self._source_split(split))

    def dataset(self, split: str) -> Dataset:
        """The source's ``split`` (or the fixed ``split`` given), every image upside down."""
        return map_images(self.source.dataset(self._source_split(split)), upside_down)


def channel_mean(dataset: Dataset, max_items: int = 2000) -> torch.Tensor:
    """Per-channel pixel mean (shape ``(C, 1, 1)``) over at most ``max_items`` images."""
    if isinstance(dataset, ImageTensors):
        imgs = dataset.images[:max_items].float()
        return imgs.mean(dim=(0, 2, 3)).view(-1, 1, 1)
    n = min(len(dataset), max_items)
    total = sum(dataset[i][0].float().mean(dim=(1, 2)) for i in range(n))
    return (total / n).view(-1, 1, 1)


def augment(x: torch.Tensor, kind: Augmentation, pad: int = 4) -> torch.Tensor:
    """Train-time augmentation of one uint8 ``(C, H, W)`` image.

    Args:
        x: the image.
        kind: ``none`` (``x`` itself), ``flip`` (a horizontal flip with probability 1/2) or
            ``crop_flip`` (a random crop of the zero-padded image, then the flip).
        pad: the padding of ``crop_flip``, in pixels on every side.
    """
    check_choice("kind", kind, Augmentation)
    if kind == "none":
        return x
    if kind == "crop_flip":
        h, w = x.shape[-2:]
        padded = F.pad(x, (pad, pad, pad, pad))
        i, j = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        x = padded[:, i : i + h, j : j + w]
    if torch.rand(()) < 0.5:
        x = x.flip(-1)
    return x

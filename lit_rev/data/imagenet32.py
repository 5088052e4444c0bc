"""Downsampled ImageNet 32x32 (Chrabaszcz et al. 2017) as an image source, in its published layout.

The set is distributed by image-net.org (after a login, so it cannot be downloaded here) as
``Imagenet32_train_npz.zip`` and ``Imagenet32_val_npz.zip``. Their files go under
``<root>/imagenet32/``, ``root`` defaulting to ``$LIT_REV_DATA`` (or ``./data``):

    imagenet32/train_data_batch_1.npz ... train_data_batch_10.npz   (1,281,167 images)
    imagenet32/val_data.npz                                          (50,000 images)

(the archives' own folders ``Imagenet32_train_npz/`` and ``Imagenet32_val_npz/`` inside
``imagenet32/`` are found too). Each file holds ``data``, ``N x 3072`` uint8 rows of a red
plane, a green plane and a blue plane (each 32x32, row-major), and ``labels``, the classes
numbered 1..1000; training files also hold ``mean``, the mean image, which is not used here.
The ``train`` split is the ten training files in order, the ``test`` split is ``val_data``.
A missing file stops with an error saying which files to put where; a damaged one (npz files
are zip archives, whose CRC-32 is checked as the arrays are read) names the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from lit_rev.data.files import DataFileError
from lit_rev.data.images import ImageSource, ImageTensors
from lit_rev.data.vision import default_root

SIZE = 32
TRAIN_FILES = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
VAL_FILE = "val_data.npz"
NUM_CLASSES = 1000


class ImageNet32(ImageSource):
    """ImageNet downsampled to 32x32 (the ``Imagenet32_*_npz`` files), ``train`` and ``test``.

    Yields uint8 ``(3, 32, 32)`` images and labels 0..999 (the files' 1-based labels minus one).
    Named ``ImageNet32`` to keep it apart from :class:`~lit_rev.data.imagenet.ImageNetDataModule`,
    the full-size ILSVRC-2012 folders of the RevNet experiments.

    Args:
        root: directory holding ``imagenet32/``; default ``$LIT_REV_DATA`` (or ``./data``).
    """

    folder = "imagenet32"
    archives: ClassVar[dict[str, str]] = {
        "train": "Imagenet32_train_npz",
        "test": "Imagenet32_val_npz",
    }

    def __init__(self, root: str | None = None, name: str | None = None):
        super().__init__(name)
        self.root = root
        self._cache: dict[str, ImageTensors] = {}

    @property
    def directory(self) -> Path:
        """``<root>/imagenet32``, where the npz files (or the archives' folders) go."""
        return Path(self.root if self.root is not None else default_root()) / self.folder

    def files(self, split: str) -> list[Path]:
        """The files ``split`` reads, found in ``imagenet32/`` or in the archive's folder there."""
        self._check_split(split, ("train", "test"))
        names = TRAIN_FILES if split == "train" else (VAL_FILE,)
        found, missing = [], []
        for name in names:
            candidates = [self.directory / name, self.directory / self.archives[split] / name]
            path = next((p for p in candidates if p.is_file()), None)
            (found if path is not None else missing).append(path or candidates[0])
        if missing:
            listed = ", ".join(names) if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            what = f"{missing[0]} is missing"
            if len(missing) > 1:
                what = (
                    f"{len(missing)} of its {len(names)} files are missing, the first {missing[0]}"
                )
            raise DataFileError(
                f"ImageNet32 {split} split: {what}. The set cannot be downloaded automatically "
                f"(image-net.org needs a login): download {self.archives[split]}.zip (Downsampled "
                f"ImageNet 32x32) from https://image-net.org/download-images and extract {listed} "
                f"into {self.directory} (set $LIT_REV_DATA to move that directory)."
            )
        return found

    def dataset(self, split: str) -> ImageTensors:
        """The ``train`` or ``test`` split, read and checked once, then cached in memory."""
        self._check_split(split, ("train", "test"))
        if split not in self._cache:
            self._cache[split] = self._load(self.files(split))
        return self._cache[split]

    def _load(self, paths: list[Path]) -> ImageTensors:
        # Labels first (small), so the images go straight into one preallocated tensor: the
        # training split is 3.9 GB, and concatenating per-file arrays would need twice that.
        labels = [_read(path, "labels", _is_integer_vector, "1-D integers") for path in paths]
        for path, y in zip(paths, labels, strict=True):
            if len(y) and (y.min() < 1 or y.max() > NUM_CLASSES):
                raise DataFileError(
                    f"{path}: labels must be 1..{NUM_CLASSES} (the published files count from 1), "
                    f"found {int(y.min())}..{int(y.max())}; the file is not the published version"
                )
        images = torch.empty((sum(len(y) for y in labels), 3, SIZE, SIZE), dtype=torch.uint8)
        start = 0
        for path, y in zip(paths, labels, strict=True):
            shape = (len(y), 3 * SIZE * SIZE)
            rows = _read(
                path,
                "data",
                _is_uint8_of_shape(shape),
                f"uint8 of shape {shape}, one row per label",
            )
            # A row is the red plane, then the green plane, then the blue plane: channels first.
            images[start : start + len(y)] = torch.from_numpy(rows.reshape(len(y), 3, SIZE, SIZE))
            start += len(y)
        targets = torch.from_numpy(np.concatenate(labels).astype(np.int64)) - 1
        return ImageTensors(images, targets)


def _is_integer_vector(array: np.ndarray) -> bool:
    """Whether ``array`` is 1-D of an integer dtype (the files' labels)."""
    return array.ndim == 1 and np.issubdtype(array.dtype, np.integer)


def _is_uint8_of_shape(shape: tuple[int, ...]) -> Callable[[np.ndarray], bool]:
    """A check that an array is uint8 of exactly ``shape`` (the files' image rows)."""

    def ok(array: np.ndarray) -> bool:
        return array.shape == shape and array.dtype == np.uint8

    return ok


def _read(path: Path, key: str, ok: Callable[[np.ndarray], bool], expected: str) -> np.ndarray:
    """Array ``key`` of the npz file ``path``, checked by ``ok``; any failure names the file."""
    fix = "the file is corrupt or not the published version: delete it and extract it again"
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise DataFileError(
                    f"{path} has no array {key!r} (it has {sorted(npz.files)}); {fix}"
                )
            array = npz[key]
    except DataFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataFileError(
            f"cannot read {key!r} from {path} ({type(err).__name__}: {err}); {fix}"
        ) from err
    if not ok(array):
        raise DataFileError(
            f"{path}: {key!r} has dtype {array.dtype} and shape {array.shape}, "
            f"expected {expected}; {fix}"
        )
    return array

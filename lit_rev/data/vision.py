"""The torchvision image sets, with their real download path.

``root`` defaults to ``$LIT_REV_DATA`` (or ``./data``). With ``download=True`` torchvision
fetches a missing set from its public mirror; without a network, a missing or corrupt set
raises :class:`~lit_rev.data.files.DataFileError` naming the directory it looked in and,
when it can tell, the file at fault: one that is missing, fails torchvision's MD5 check, or
(MNIST, which torchvision does not checksum after extraction) has a malformed idx header, or
(CelebA, DTD, Places365, whose images have no published hashes) is not a JPEG.
"""

from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from lit_rev.data.files import DataFileError
from lit_rev.data.images import ImageSource, ImageTensors
from lit_rev.data.transforms import convert
from lit_rev.options import check_choice


def default_root() -> str:
    """Where data sets live unless a ``root`` is given: ``$LIT_REV_DATA``, else ``./data``."""
    return os.environ.get("LIT_REV_DATA", "data")


class TorchvisionSource(ImageSource):
    """Base of the torchvision-backed sets: ``train`` and ``test`` splits."""

    splits: tuple[str, ...] = ("train", "test")

    def __init__(self, root: str | None = None, download: bool = True, name: str | None = None):
        super().__init__(name)
        self.root = root
        self.download = download
        self._cache: dict[str, Dataset] = {}

    @property
    def resolved_root(self) -> Path:
        """The directory torchvision reads: ``root``, or :func:`default_root` when None."""
        return Path(self.root if self.root is not None else default_root())

    def _open(self, split: str):
        raise NotImplementedError

    def _files(self, split: str) -> list[tuple[Path, str | None]]:
        """The files ``split`` reads, each with its MD5 from torchvision's table (or None)."""
        return []

    def _file_problem(self, path: Path, md5: str | None) -> str | None:
        """Why ``path`` cannot be read (missing, wrong MD5), or None if nothing is found wrong."""
        if not path.is_file():
            return "is missing"
        if md5 is not None:
            from torchvision.datasets.utils import calculate_md5

            actual = calculate_md5(str(path))
            if actual != md5:
                return f"is corrupt: its MD5 is {actual}, expected {md5}"
        return None

    def dataset(self, split: str) -> Dataset:
        """A split named in ``splits``, opened once; a failure names the files at fault."""
        self._check_split(split, self.splits)
        if split not in self._cache:
            try:
                self._cache[split] = self._open(split)
            except DataFileError:
                raise
            # torchvision's readers fail with bare asserts (MNIST's idx magic number), pickle and
            # type errors on damaged files, besides its own "not found or corrupted" RuntimeError.
            except (
                RuntimeError,
                OSError,
                ValueError,
                AssertionError,
                TypeError,
                KeyError,
                EOFError,
                pickle.UnpicklingError,
            ) as err:
                raise self._error(split, err) from err
        return self._cache[split]

    def _error(self, split: str, err: BaseException) -> DataFileError:
        """One error naming the set, the directory and every file found at fault, with the fix."""
        hint = "" if self.download else " (download=False)"
        cause = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        problems = []
        for path, md5 in self._files(split):
            try:
                problem = self._file_problem(path, md5)
            except OSError as os_err:
                problem = f"cannot be read ({os_err})"
            if problem is not None:
                problems.append(f"{path} {problem}")
        if not problems:
            return DataFileError(
                f"{type(self).__name__} {split} split not found or corrupt under "
                f"{self.resolved_root}{hint}: {cause}"
            )
        fix = self._fix(all(p.endswith("is missing") for p in problems))
        return DataFileError(
            f"{type(self).__name__} {split} split under {self.resolved_root}{hint}: "
            + "; ".join(problems)
            + f". {fix}. ({cause})"
        )

    def _fix(self, all_missing: bool) -> str:
        """How to mend the files found at fault (all of them missing, or not), as errors say it."""
        if all_missing:
            return (
                "Set download=True to fetch the set"
                if not self.download
                else "The download did not complete: check the network, or fetch the files by hand"
            )
        return (
            "The file is corrupt or not the published version: delete it and fetch it again "
            "(download=True re-downloads a deleted file)"
        )


def idx_problem(path: Path, ndim: int) -> str | None:
    """Why ``path`` is not a uint8 idx file of ``ndim`` dimensions (MNIST's format), or None.

    Checks the header (two zero bytes, type 0x08, the number of dimensions) and that the size
    is the header plus the product of the dimensions, which catches zeroed and truncated files.
    """
    with open(path, "rb") as f:
        header = f.read(4 + 4 * ndim)
    if len(header) < 4 + 4 * ndim:
        return f"is truncated: {len(header)} bytes, shorter than an idx header"
    magic = int.from_bytes(header[:4], "big")
    if magic != 0x800 + ndim:
        return f"is corrupt: its idx magic number is {magic:#010x}, expected {0x800 + ndim:#010x}"
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = len(header) + int(np.prod(dims))
    actual = path.stat().st_size
    if actual != expected:
        return f"is corrupt or truncated: {actual} bytes, its header {dims} implies {expected}"
    return None


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
    channel_stats = ((0.1307,), (0.3081,))

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = getattr(tvd, self._cls)(
            str(self.resolved_root), train=split == "train", download=self.download
        )
        if len(ds.data) != len(ds.targets):
            # each idx file can be whole by its own header and still disagree with the other;
            # unchecked, training would fail on the first missing label, inside a worker
            images, labels = (path for path, _ in self._files(split))
            raise DataFileError(
                f"{type(self).__name__} {split} split under {self.resolved_root}: {images} "
                f"holds {len(ds.data)} images but {labels} holds {len(ds.targets)} labels; one "
                "of them is not the published file: delete both and fetch them again "
                "(download=True re-downloads deleted files)"
            )
        return ImageTensors(ds.data.unsqueeze(1).to(torch.uint8).contiguous(), ds.targets.long())

    def _files(self, split):
        prefix = "train" if split == "train" else "t10k"
        raw = self.resolved_root / self._cls / "raw"
        return [(raw / f"{prefix}-{kind}-ubyte", None) for kind in ("images-idx3", "labels-idx1")]

    def _file_problem(self, path, md5):
        ndim = 3 if "images" in path.name else 1
        return super()._file_problem(path, md5) or idx_problem(path, ndim)


class FashionMNIST(MNIST):
    """Zalando's FashionMNIST (60k/10k 28x28 clothes), via ``torchvision.datasets.FashionMNIST``."""

    _cls = "FashionMNIST"
    channel_stats = None  # MNIST's do not apply


class CIFAR10(TorchvisionSource):
    """CIFAR-10 (50k/10k 32x32 RGB), via ``torchvision.datasets.CIFAR10``."""

    _cls = "CIFAR10"
    channel_stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = getattr(tvd, self._cls)(
            str(self.resolved_root), train=split == "train", download=self.download
        )
        return _hwc_to_tensors(ds.data, ds.targets)

    def _files(self, split):
        import torchvision.datasets as tvd

        cls = getattr(tvd, self._cls)
        base = self.resolved_root / cls.base_folder
        entries = cls.train_list if split == "train" else cls.test_list
        meta = (base / cls.meta["filename"], cls.meta["md5"])
        return [(base / f, md5) for f, md5 in entries] + [meta]


class CIFAR100(CIFAR10):
    """CIFAR-100 (50k/10k 32x32 RGB, 100 classes), via ``torchvision.datasets.CIFAR100``."""

    _cls = "CIFAR100"
    # Its own statistics: CIFAR-10's differ by up to 0.03 in the mean and 0.02 in the std.
    channel_stats = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


class SVHN(TorchvisionSource):
    """Street View House Numbers (73k/26k 32x32 RGB), via ``torchvision.datasets.SVHN``.

    Reading its ``.mat`` files needs scipy.
    """

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = tvd.SVHN(str(self.resolved_root), split=split, download=self.download)
        return ImageTensors(
            torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels).long()
        )

    def _files(self, split):
        import torchvision.datasets as tvd

        _, filename, md5 = tvd.SVHN.split_list[split]
        return [(self.resolved_root / filename, md5)]


class _CelebAImages(Dataset):
    """Lazy CelebA: decodes each JPEG on access, centre-crops to ``crop`` pixels.

    A JPEG that cannot be decoded raises :class:`DataFileError` naming it.
    """

    def __init__(self, ds, crop: int):
        self.ds = ds
        self.crop = crop

    def __len__(self):
        return len(self.ds)

    def path(self, i: int) -> Path:
        """The JPEG file of image ``i``."""
        return Path(self.ds.root) / self.ds.base_folder / "img_align_celeba" / self.ds.filename[i]

    def __getitem__(self, i):
        import torchvision.transforms.functional as TF

        try:
            img, _ = self.ds[i]
        except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
            raise DataFileError(
                f"CelebA image {self.path(i)} cannot be decoded ({err}); the file is corrupt: "
                "delete img_align_celeba and extract img_align_celeba.zip again"
            ) from err
        x = TF.pil_to_tensor(img)
        if self.crop:
            x = TF.center_crop(x, [self.crop, self.crop])
        return x, -1


class CelebA(TorchvisionSource):
    """Aligned CelebA faces (162,770 train / 19,962 test, 178x218 RGB).

    Read through ``torchvision.datasets.CelebA``. Images are centre-cropped to ``crop`` pixels
    (148, as in Glow and most CelebA models) and decoded lazily; the DataModule then resizes
    them (to 64 for the paper's Glow).
    """

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        crop: int = 148,
        name: str | None = None,
    ):
        super().__init__(root, download, name)
        self.crop = crop

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = tvd.CelebA(
            str(self.resolved_root), split=split, target_type=[], download=self.download
        )
        images = _CelebAImages(ds, self.crop)
        check_jpegs([images.path(i) for i in range(len(images))])
        return images

    def _files(self, split):
        import torchvision.datasets as tvd

        base = self.resolved_root / tvd.CelebA.base_folder
        # The image archive may be deleted once extracted; torchvision has no hash of the images.
        return [(base / f, md5) for _, md5, f in tvd.CelebA.file_list if not f.endswith(".zip")]


def check_jpegs(
    paths: list[Path],
    what: str = "CelebA image",
    fix: str = "delete img_align_celeba and extract img_align_celeba.zip again",
) -> None:
    """Check that every file exists and starts with a JPEG marker (two bytes each, no decoding).

    CelebA's, DTD's and Places365's images have no published hashes, and decoding tens of
    thousands of JPEGs up front takes minutes; this cheap check finds missing, empty and zeroed
    images before training instead of mid-run.

    Args:
        paths: the image files.
        what: what an image is called in the error, e.g. ``CelebA image``.
        fix: how to restore a damaged image, as the error states it.
    """
    for path in paths:
        try:
            with open(path, "rb") as f:
                start = f.read(2)
        except OSError as err:
            raise DataFileError(f"{what} {path} cannot be read ({err}): {fix}") from err
        if start != b"\xff\xd8":
            raise DataFileError(
                f"{what} {path} is not a JPEG (it starts with {start!r}): the file is "
                f"corrupt; {fix}"
            )


def load_image(path: str | Path, size: int | None, what: str, fix: str) -> torch.Tensor:
    """Decode one image file as uint8 RGB ``(3, H, W)``, brought to ``size`` x ``size``.

    The image is centre-cropped to a square on its shorter side and resized to ``size`` with
    antialiased bilinear interpolation: the rule the DataModule applies to every set
    (:func:`~lit_rev.data.transforms.convert`). ``size=None`` keeps the image as it is.

    Raises:
        DataFileError: naming the file and ``fix`` where it cannot be decoded.
    """
    import torchvision.transforms.functional as TF
    from PIL import Image

    try:
        with Image.open(path) as img:
            x = TF.pil_to_tensor(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
        raise DataFileError(
            f"{what} {path} cannot be decoded ({err}): the file is corrupt; {fix}"
        ) from err
    return x if size is None else convert(x, 3, size)


class _ScaledImageFiles(TorchvisionSource):
    """Base of the sets of variable-size image files that are brought to one ``size``."""

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        size: int | None = 32,
        name: str | None = None,
    ):
        super().__init__(root, download, name)
        if size is not None and size < 1:
            raise ValueError(
                f"size must be a positive number of pixels or None (the images as stored), "
                f"got {size}"
            )
        self.size = size

    def _refetch(self) -> str:
        """How to restore a damaged image file, as the errors state it."""
        raise NotImplementedError

    def _loader(self):
        what = f"{type(self).__name__} image"
        return partial(load_image, size=self.size, what=what, fix=self._refetch())


# DTD's ten published train/val/test partitions of its images.
DTDPartition = Literal[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


class DTD(_ScaledImageFiles):
    """The Describable Textures Dataset (5,640 RGB images of 47 textures, 300x300 to 640x640).

    Read through ``torchvision.datasets.DTD`` from ``<root>/dtd/dtd/images/<texture>/*.jpg``
    and its split lists ``labels/{train,val,test}<partition>.txt``; ``download=True`` fetches
    the published ``dtd-r1.0.1.tar.gz``. It is the "Textures" far-OOD set of OpenOOD's
    CIFAR-10 benchmark. Images are decoded lazily and brought to ``size`` x ``size`` RGB:
    centre-cropped to a square on the shorter side, then resized (antialiased bilinear), the
    rule the DataModule applies to every set; labels are texture indices (0-46).

    Splits: ``train`` is DTD's train and val lists of the ``partition`` (3,760 images),
    ``test`` its test list (1,880) and ``all`` every image (5,640, OpenOOD's Textures set).

    Args:
        root: the data directory (default ``$LIT_REV_DATA``).
        download: fetch the archive when the images are missing.
        partition: which of DTD's ten published train/val/test partitions, 1 to 10.
        size: the height and width of every image (32, CIFAR's size, by default); None keeps
            each image's own size (the DataModule then crops and resizes it).
        name: the set's name in reports (default ``dtd``).
    """

    splits = ("train", "test", "all")
    _lists: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("train", "val"),
        "test": ("test",),
        "all": ("train", "val", "test"),
    }

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        partition: DTDPartition = 1,
        size: int | None = 32,
        name: str | None = None,
    ):
        super().__init__(root, download, size, name)
        check_choice("partition", partition, DTDPartition)
        self.partition = partition

    def _open(self, split):
        import torchvision.datasets as tvd

        parts = [
            tvd.DTD(
                str(self.resolved_root),
                split=part,
                partition=self.partition,
                download=self.download,
                loader=self._loader(),
            )
            for part in self._lists[split]
        ]
        # torchvision keeps each list's image paths in ``_image_files``.
        paths = [path for ds in parts for path in ds._image_files]
        check_jpegs(paths, "DTD image", self._refetch())
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _refetch(self):
        return f"delete {self.resolved_root / 'dtd'} and fetch it again with download=True"

    def _fix(self, all_missing):
        # torchvision downloads DTD only when its folder is missing, never a single file.
        if not (self.resolved_root / "dtd" / "dtd").is_dir():
            return super()._fix(all_missing)
        return f"The set is incomplete or corrupt: {self._refetch()}"

    def _files(self, split):
        labels = self.resolved_root / "dtd" / "dtd" / "labels"
        return [(labels / f"{part}{self.partition}.txt", None) for part in self._lists[split]]

    def _file_problem(self, path, md5):
        # DTD publishes no hashes of its lists: check that every line is ``<texture>/<file>``.
        problem = super()._file_problem(path, md5)
        if problem is not None:
            return problem
        lines = path.read_bytes().decode("ascii", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            if line.count("/") != 1 or not line.isprintable():
                return f"is corrupt: line {number} is {line[:20]!r}, not '<texture>/<file>.jpg'"
        return None


class Places365(_ScaledImageFiles):
    """Places365-Standard scenes, the small 256x256 RGB images (365 classes).

    Read through ``torchvision.datasets.Places365`` (``small=True``) from ``<root>/places365``:
    ``categories_places365.txt``, the file lists ``places365_val.txt`` and
    ``places365_train_standard.txt`` (MD5-checked by torchvision) and the images under
    ``val_256/`` and ``data_256_standard/``. ``download=True`` fetches the published devkit
    and image archives. It is a far-OOD set of OpenOOD's CIFAR-10 benchmark.

    Splits: ``test`` is Places365's val split (36,500 images, 100 per class), the OOD test set;
    ``train`` is train-standard (1.8 million images, a 24 GB download). Images are decoded
    lazily and brought to ``size`` x ``size``: centre-cropped to a square on the shorter side,
    then resized (antialiased bilinear), the rule the DataModule applies to every set; labels
    are class indices (0-364).

    Args:
        root: the data directory (default ``$LIT_REV_DATA``); the set lives in its
            ``places365`` folder.
        download: fetch the devkit and the split's images when missing.
        size: the height and width of every image (32, CIFAR's size, by default); None keeps
            them at 256x256.
        name: the set's name in reports (default ``places365``).
    """

    _split: ClassVar[dict[str, str]] = {"train": "train-standard", "test": "val"}

    @property
    def places_root(self) -> Path:
        """The directory torchvision reads: the ``places365`` folder of the data root."""
        return self.resolved_root / "places365"

    def _open(self, split):
        import torchvision.datasets as tvd

        ds = tvd.Places365(
            str(self.places_root),
            split=self._split[split],
            small=True,
            download=self.download,
            loader=self._loader(),
        )
        check_jpegs([path for path, _ in ds.imgs], "Places365 image", self._refetch())
        return ds

    def _refetch(self):
        return (
            f"delete the split's image folder (val_256 or data_256_standard) in "
            f"{self.places_root} and fetch it again with download=True"
        )

    def _files(self, split):
        import torchvision.datasets as tvd

        listed = [tvd.Places365._CATEGORIES_META, tvd.Places365._FILE_LIST_META[self._split[split]]]
        return [(self.places_root / f, md5) for f, md5 in listed]

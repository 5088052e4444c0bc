"""Tiny image sets written in each set's real on-disk format.

``write_all(root)`` creates MNIST, FashionMNIST, CIFAR-10, CIFAR-100, SVHN, CelebA, DTD
(Textures), Places365 (small images), the ImageNet folder tree and downsampled ImageNet 32x32
under ``root`` (a few images each);
``patch_md5(monkeypatch, root)`` points torchvision's MD5 tables at the fake files, so the
real loading code (integrity check included) runs on them.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from lit_rev.data import synthetic_files

N_TRAIN, N_TEST = 40, 20


def _rng(seed: int = 0):
    return np.random.default_rng(seed)


def _idx(path: Path, array: np.ndarray) -> None:
    magic = {1: 0x801, 3: 0x803}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST") -> None:
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = _rng(1)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


def write_cifar(root: Path, classes: int = 10) -> None:
    synthetic_files.write_cifar(root, classes, N_TRAIN, N_TEST, seed=2)


def write_svhn(root: Path) -> None:
    synthetic_files.write_svhn(root, N_TRAIN, N_TEST, seed=3)


def write_celeba(root: Path) -> None:
    from PIL import Image

    base = Path(root) / "celeba"
    (base / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = _rng(4)
    n = N_TRAIN + N_TEST
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3)).astype(np.uint8)).save(
            base / "img_align_celeba" / name
        )
    partition = [0] * N_TRAIN + [2] * N_TEST
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{a} {p}\n" for a, p in zip(names, partition, strict=True))
    )
    (base / "identity_CelebA.txt").write_text(
        "".join(f"{a} {i % 7}\n" for i, a in enumerate(names))
    )
    (base / "list_attr_celeba.txt").write_text(
        f"{n}\nSmiling Young\n" + "".join(f"{a} 1 -1\n" for a in names)
    )
    (base / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{a} 1 2 3 4\n" for a in names)
    )
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y\n" + "".join(f"{a} 69 109\n" for a in names)
    )


# DTD's fake textures: N_TRAIN + N_TEST images split evenly over the classes; in every partition
# each class has DTD_PER_CLASS images in its train, val and test lists (N_TRAIN = train + val).
DTD_CLASSES = ("banded", "blotchy", "braided", "bubbly")
DTD_PER_CLASS = {"train": 6, "val": 4, "test": 5}


def write_dtd(root: Path) -> Path:
    """DTD's published layout: ``dtd/dtd/images/<texture>/<texture>_<nnnn>.jpg`` (RGB JPEGs
    of 300 to 400 pixels a side, none square, wide and tall in turn) and
    ``dtd/dtd/labels/{train,val,test}<1-10>.txt`` (one ``<texture>/<file>`` a line), each
    partition a seeded shuffle of every class's images."""
    base = Path(root) / "dtd" / "dtd"
    rng = _rng(6)
    per_class = sum(DTD_PER_CLASS.values())
    names = {}
    for texture in DTD_CLASSES:
        (base / "images" / texture).mkdir(parents=True, exist_ok=True)
        names[texture] = [f"{texture}_{i:04d}.jpg" for i in range(1, per_class + 1)]
        for i, name in enumerate(names[texture]):
            short, long = rng.integers(300, 350), rng.integers(351, 400)
            h, w = (short, long) if i % 2 else (long, short)
            _jpeg(base / "images" / texture / name, rng.integers(0, 256, (h, w, 3)))
    (base / "labels").mkdir(exist_ok=True)
    for partition in range(1, 11):
        lists = {split: [] for split in DTD_PER_CLASS}
        for texture in DTD_CLASSES:
            order = rng.permutation(names[texture]).tolist()
            for split, n in DTD_PER_CLASS.items():
                lists[split] += [f"{texture}/{name}" for name in order[:n]]
                order = order[n:]
        for split, lines in lists.items():
            (base / "labels" / f"{split}{partition}.txt").write_text("\n".join(lines) + "\n")
    return base


PLACES_CATEGORIES = ("/a/abbey", "/a/airfield", "/b/bakery/shop", "/c/canyon", "/s/ski_slope")


def write_places365(root: Path) -> Path:
    """Places365-Standard's layout (small images) under ``root/places365``:
    ``categories_places365.txt`` (``/a/abbey 0``), ``places365_val.txt``
    (``Places365_val_00000001.jpg 3``) with ``val_256/*.jpg``, and
    ``places365_train_standard.txt`` (``/a/abbey/00000001.jpg 0``) with
    ``data_256_standard/<category>/*.jpg``. Images are 256x256 JPEGs; the first validation
    image is grayscale, as a few published ones are."""
    base = Path(root) / "places365"
    base.mkdir(parents=True, exist_ok=True)
    rng = _rng(7)
    (base / "categories_places365.txt").write_text(
        "".join(f"{c} {i}\n" for i, c in enumerate(PLACES_CATEGORIES))
    )
    val_lines = []
    (base / "val_256").mkdir(exist_ok=True)
    for i in range(N_TEST):
        name = f"Places365_val_{i + 1:08d}.jpg"
        shape = (256, 256) if i == 0 else (256, 256, 3)
        _jpeg(base / "val_256" / name, rng.integers(0, 256, shape))
        val_lines.append(f"{name} {rng.integers(len(PLACES_CATEGORIES))}\n")
    (base / "places365_val.txt").write_text("".join(val_lines))
    train_lines = []
    for i in range(N_TRAIN):
        label = i % len(PLACES_CATEGORIES)
        relative = f"{PLACES_CATEGORIES[label]}/{i + 1:08d}.jpg"
        path = base / "data_256_standard" / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        _jpeg(path, rng.integers(0, 256, (256, 256, 3)))
        train_lines.append(f"{relative} {label}\n")
    (base / "places365_train_standard.txt").write_text("".join(train_lines))
    return base


def _jpeg(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def write_imagenet(root: Path) -> None:
    """ImageFolder layout ``root/imagenet/{train,val}/<wnid>/*.JPEG``.

    Written by the RevNet tests' own writer, ``tests/revnet/fake_imagenet.py``.
    """
    from tests.revnet.fake_imagenet import write_fake_imagenet

    write_fake_imagenet(root)


# Planted in the first validation image of the fake ImageNet32 (zero elsewhere):
# (channel, row, column) -> value, at index c * 1024 + row * 32 + column of its 3072-byte row.
IMAGENET32_MARKERS = {(0, 1, 2): 201, (1, 3, 4): 202, (2, 5, 6): 203}


def write_imagenet32(root: Path) -> Path:
    """Downsampled ImageNet's published npz layout under ``root/imagenet32``: ten
    ``train_data_batch_<i>.npz`` (``data``, ``labels``, ``mean``) and ``val_data.npz`` (``data``,
    ``labels``). Rows are R, G, B planes; labels count from 1 (1 and 1000 both occur)."""
    base = Path(root) / "imagenet32"
    base.mkdir(parents=True, exist_ok=True)
    rng = _rng(5)
    per_file = N_TRAIN // 10
    for i in range(1, 11):
        data = rng.integers(0, 256, (per_file, 3072)).astype(np.uint8)
        labels = rng.integers(1, 1001, per_file)
        labels[0] = 1 if i == 1 else labels[0]
        labels[-1] = 1000 if i == 10 else labels[-1]
        path = base / f"train_data_batch_{i}.npz"
        np.savez(path, data=data, labels=labels, mean=data.mean(axis=0))
    data = rng.integers(0, 256, (N_TEST, 3072)).astype(np.uint8)
    data[0] = 0
    for (c, h, w), value in IMAGENET32_MARKERS.items():
        data[0, c * 1024 + h * 32 + w] = value
    labels = rng.integers(1, 1001, N_TEST)
    labels[:2] = [1, 1000]
    np.savez(base / "val_data.npz", data=data, labels=labels)
    return base


def zero_out(path: Path) -> None:
    """Overwrite ``path`` with zeros of the same length (a failed copy or a bad disk block)."""
    path = Path(path)
    path.write_bytes(bytes(path.stat().st_size))


def write_all(root: Path) -> Path:
    root = Path(root)
    write_imagenet(root)
    write_mnist(root, "MNIST")
    write_mnist(root, "FashionMNIST")
    write_cifar(root, 10)
    write_cifar(root, 100)
    write_svhn(root)
    write_celeba(root)
    write_dtd(root)
    write_places365(root)
    write_imagenet32(root)
    return root


def _md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def patch_md5(monkeypatch, root: Path) -> None:
    """Make torchvision's integrity checks accept the fake files written under ``root``."""
    import torchvision.datasets as tvd

    root = Path(root)
    for cls in (tvd.CIFAR10, tvd.CIFAR100):
        base = root / cls.base_folder
        monkeypatch.setattr(cls, "train_list", [[f, _md5(base / f)] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, _md5(base / f)] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(base / cls.meta["filename"])})
    monkeypatch.setattr(
        tvd.SVHN,
        "split_list",
        {
            k: [u, f, _md5(root / f) if (root / f).exists() else m]
            for k, (u, f, m) in tvd.SVHN.split_list.items()
        },
    )
    base = root / tvd.CelebA.base_folder
    monkeypatch.setattr(
        tvd.CelebA,
        "file_list",
        [(i, _md5(base / f) if (base / f).exists() else m, f) for i, m, f in tvd.CelebA.file_list],
    )
    # DTD has no checksums once extracted; Places365 checks its category and file lists.
    base = root / "places365"
    file = tvd.Places365._CATEGORIES_META[0]
    if (base / file).exists():
        monkeypatch.setattr(tvd.Places365, "_CATEGORIES_META", (file, _md5(base / file)))
    monkeypatch.setattr(
        tvd.Places365,
        "_FILE_LIST_META",
        {
            k: (f, _md5(base / f) if (base / f).exists() else m)
            for k, (f, m) in tvd.Places365._FILE_LIST_META.items()
        },
    )

"""Tiny random CIFAR-10/100 and SVHN files in torchvision's real on-disk formats.

For checks on machines with no network (``benchmarks/gpu_check.py``) and for the tests: the
real loading code reads them once torchvision's MD5 tables accept their checksums.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar(
    root: str | Path, classes: int = 10, n_train: int = 40, n_test: int = 20, seed: int = 2
) -> None:
    """CIFAR-10 (``classes=10``) or CIFAR-100 in torchvision's python-pickle layout."""
    rng = np.random.default_rng(seed)
    if classes == 10:
        base = Path(root) / "cifar-10-batches-py"
        files = {f"data_batch_{i}": n_train // 5 for i in range(1, 6)} | {"test_batch": n_test}
        label_key, meta = "labels", ("batches.meta", "label_names")
    else:
        base = Path(root) / "cifar-100-python"
        files = {"train": n_train, "test": n_test}
        label_key, meta = "fine_labels", ("meta", "fine_label_names")
    base.mkdir(parents=True, exist_ok=True)
    for name, n in files.items():
        entry = {
            "data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            label_key: rng.integers(0, classes, n).tolist(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    with open(base / meta[0], "wb") as f:
        pickle.dump({meta[1]: [f"class{i}" for i in range(classes)]}, f)


def write_svhn(root: str | Path, n_train: int = 40, n_test: int = 20, seed: int = 3) -> None:
    """SVHN's ``{train,test}_32x32.mat`` (MATLAB files, images last, labels 1..10)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        savemat(
            Path(root) / f"{split}_32x32.mat",
            {
                "X": rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8),
                "y": rng.integers(1, 11, (n, 1)),
            },
        )

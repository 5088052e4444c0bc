"""A tiny ImageNet in the real ``ImageFolder`` layout.

The layout is ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``.

``write_fake_imagenet(root)`` writes a few small random JPEGs per class (one gray, to exercise the
RGB conversion) and returns ``root``; point ``$LIT_REV_DATA`` at it to run the ImageNet config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537")


def write_fake_imagenet(
    root, per_class: int = 2, size: tuple[int, int] = (40, 56), seed: int = 0
) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c, wnid in enumerate(WNIDS):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                image = (
                    Image.fromarray(pixels).convert("L")
                    if i == 0 and c == 0
                    else Image.fromarray(pixels)
                )
                image.save(folder / f"{wnid}_{split}_{i}.JPEG", quality=90)
    return root

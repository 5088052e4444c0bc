"""assert_png: a figure written to disk is a readable, non-blank PNG."""

from pathlib import Path

import matplotlib.image


def assert_png(path: Path) -> None:
    assert path.suffix == ".png" and path.is_file()
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert image.std() > 0  # not a blank canvas

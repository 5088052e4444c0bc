"""The OOD benchmark's extra sets: MNIST5k upside down (near-OOD), Textures and Places365."""

import pytest
import torch
from torch.utils.data import Dataset

from lit_rev.data import ImageDataModule, ImageSource, InMemorySource, MNIST5k, UpsideDown
from lit_rev.data.transforms import MappedDataset

# One 1x3x2 image: rows (1, 2), (3, 4), (5, 6); a second image, all zeros but one pixel.
TINY = torch.tensor(
    [[[[1, 2], [3, 4], [5, 6]]], [[[0, 0], [0, 0], [0, 9]]]],
    dtype=torch.uint8,
)
TINY_UPSIDE_DOWN = torch.tensor(
    [[[[5, 6], [3, 4], [1, 2]]], [[[0, 9], [0, 0], [0, 0]]]],
    dtype=torch.uint8,
)


class _Tiny(InMemorySource):
    """The two images of ``TINY``, labelled 7 and 3; the second is the test split."""

    test_fraction = 0.5

    def load_all(self):
        return TINY.clone(), torch.tensor([7, 3])


class _Lazy(Dataset):
    def __len__(self):
        return len(TINY)

    def __getitem__(self, i):
        return TINY[i].clone(), [7, 3][i]


class _LazySource(ImageSource):
    """``TINY`` as a lazily read set (not in memory), as torchvision's JPEG sets are."""

    def dataset(self, split):
        return _Lazy()


def test_rows_are_reversed_and_labels_kept():
    ds = UpsideDown(_Tiny()).dataset("all")
    assert torch.equal(ds.images, TINY_UPSIDE_DOWN)
    assert ds.labels.tolist() == [7, 3]


def test_a_lazy_source_is_flipped_item_by_item():
    ds = UpsideDown(_LazySource()).dataset("test")
    assert isinstance(ds, MappedDataset) and len(ds) == 2
    for i in range(2):
        x, y = ds[i]
        assert torch.equal(x, TINY_UPSIDE_DOWN[i]) and y == [7, 3][i]


def test_report_name():
    assert UpsideDown(MNIST5k()).name == "mnist5k-upsidedown"
    assert UpsideDown(MNIST5k(), name="flipped").name == "flipped"


def test_split_reads_the_split_given_or_the_one_asked_for():
    source = _Tiny()
    assert len(UpsideDown(source).dataset("all")) == 2
    assert UpsideDown(source).dataset("test").labels.tolist() == [3]
    fixed = UpsideDown(source, split="test")
    verified = []
    source.verify = verified.append
    for asked in ("train", "test", "all"):
        assert fixed.dataset(asked).labels.tolist() == [3]
        fixed.verify(asked)
    assert verified == ["test"] * 3


def test_bad_options_name_the_fix():
    with pytest.raises(ValueError, match=r"split must be one of 'train', 'test', 'all', got 'val'"):
        UpsideDown(_Tiny(), split="val")
    with pytest.raises(TypeError, match=r"source must be an ImageSource.*MNIST5k"):
        UpsideDown("MNIST5k")


def test_mnist5k_upside_down_in_a_datamodule_from_yaml():
    """The embedded benchmark's near-OOD set: held-out MNIST5k digits, upside down."""
    import jsonargparse

    import lit_rev.cli  # noqa: F401  (registers the project's classes, as `python -m lit_rev` does)

    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(ImageDataModule, "data")
    ood = "[{class_path: UpsideDown, init_args: {source: MNIST5k, split: test}}]"
    cfg = parser.parse_args(["--data.dataset=MNIST5k", f"--data.ood={ood}", "--data.ood_split=all"])
    dm = parser.instantiate_classes(cfg).data
    assert dm.test_names == ["mnist5k", "mnist5k-upsidedown"]
    dm.setup("test")
    upright, flipped = dm.test_sets
    assert len(upright) == len(flipped) == 1000
    x, y = upright[0]
    x_flipped, y_flipped = flipped[0]
    assert torch.equal(x_flipped, x.flip(-2)) and y_flipped == y
    assert not torch.equal(x_flipped, x)

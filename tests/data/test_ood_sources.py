"""The OOD benchmark's extra sets: MNIST5k upside down (near-OOD), Textures and Places365."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from lit_rev.data import (
    DTD,
    DataFileError,
    ImageDataModule,
    ImageSource,
    InMemorySource,
    MNIST5k,
    Places365,
    UpsideDown,
)
from lit_rev.data.transforms import MappedDataset, convert
from lit_rev.data.vision import load_image
from tests import fakedata

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


# --- Textures (DTD) and Places365, through torchvision's own readers on fake files ------------


def _dtd_list(root, split, partition=1):
    return (root / "dtd" / "dtd" / "labels" / f"{split}{partition}.txt").read_text().split()


def test_dtd_splits_and_labels_follow_its_lists(fake_vision):
    textures = sorted(fakedata.DTD_CLASSES)
    for split, lists in (("train", ["train", "val"]), ("test", ["test"])):
        ds = DTD(download=False).dataset(split)
        listed = [line for part in lists for line in _dtd_list(fake_vision, part)]
        assert len(ds) == len(listed)
        assert [ds[i][1] for i in range(len(ds))] == [
            textures.index(line.split("/")[0]) for line in listed
        ]
    assert len(DTD(download=False).dataset("all")) == fakedata.N_TRAIN + fakedata.N_TEST
    other = DTD(download=False, partition=2).dataset("test")
    assert _dtd_list(fake_vision, "test", 2) != _dtd_list(fake_vision, "test", 1)
    first = _dtd_list(fake_vision, "test", 2)[0].split("/")[0]
    assert len(other) == fakedata.N_TEST and other[0][1] == textures.index(first)


@pytest.mark.parametrize("partition", [1, 2])
def test_dtd_images_are_the_listed_files_cropped_and_resized(fake_vision, partition):
    """Each item is its partition's listed JPEG, centre-cropped to a square and resized
    (convert's rule)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    listed = _dtd_list(fake_vision, "test", partition)
    stored = DTD(download=False, partition=partition, size=None).dataset("test")
    scaled = DTD(download=False, partition=partition, size=24).dataset("test")
    for i in (0, len(listed) - 1):
        with Image.open(fake_vision / "dtd" / "dtd" / "images" / listed[i]) as img:
            decoded = TF.pil_to_tensor(img)
        x, _ = stored[i]
        assert torch.equal(x, decoded) and x.shape[1] != x.shape[2]  # not square
        y, _ = scaled[i]
        assert y.shape == (3, 24, 24) and torch.equal(y, convert(decoded, 3, 24))


def test_places365_test_split_is_its_val_list(fake_vision):
    base = fake_vision / "places365"
    lines = [line.split() for line in (base / "places365_val.txt").read_text().splitlines()]
    ds = Places365(download=False).dataset("test")
    assert len(ds) == len(lines) == fakedata.N_TEST
    assert [ds[i][1] for i in range(len(ds))] == [int(label) for _, label in lines]
    x, _ = ds[1]
    assert torch.equal(x, convert(load_image(base / "val_256" / lines[1][0], None, "", ""), 3, 32))
    gray, _ = ds[0]  # a grayscale JPEG comes out as RGB with equal channels
    assert gray.shape == (3, 32, 32) and torch.equal(gray[0], gray[1])
    assert torch.equal(gray[1], gray[2]) and gray.float().std() > 3


def test_places365_train_split_is_train_standard(fake_vision):
    lines = (fake_vision / "places365" / "places365_train_standard.txt").read_text().splitlines()
    ds = Places365(download=False, size=None).dataset("train")
    assert len(ds) == len(lines) == fakedata.N_TRAIN
    assert [ds[i][1] for i in range(len(ds))] == [int(line.split()[1]) for line in lines]
    assert ds[0][0].shape == (3, 256, 256)


def test_size_rule_crops_the_centre_square_then_resizes(tmp_path):
    """Known answer: a 40x20 image whose centre square is black above and gray below, between
    white margins. The margins are cropped away; the halves survive the resize to 10x10."""
    from PIL import Image

    pixels = np.full((20, 40), 255, dtype=np.uint8)
    pixels[:10, 10:30] = 0
    pixels[10:, 10:30] = 200
    Image.fromarray(pixels).save(tmp_path / "image.png")
    x = load_image(tmp_path / "image.png", 10, "test image", "")
    assert x.shape == (3, 10, 10) and x.dtype == torch.uint8
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # gray -> RGB
    assert int(x[:, :4].max()) == 0 and int(x[:, 6:].min()) == int(x[:, 6:].max()) == 200
    assert int(x.max()) == 200  # no white margin left
    assert load_image(tmp_path / "image.png", None, "", "").shape == (3, 20, 40)


def test_undecodable_image_names_itself(fake_vision, tmp_path):
    import shutil

    root = Path(shutil.copytree(fake_vision / "dtd", tmp_path / "dtd")).parent
    listed = _dtd_list(root, "test")
    path = root / "dtd" / "dtd" / "images" / listed[3]
    path.write_bytes(b"\xff\xd8" + bytes(100))  # a JPEG marker, then nothing decodable
    ds = DTD(root=str(root), download=False).dataset("test")
    ds[2]
    with pytest.raises(
        DataFileError, match=rf"DTD image {path} cannot be decoded.*corrupt.*delete"
    ):
        ds[3]


def test_dtd_list_in_place_but_unreadable_says_to_fetch_the_folder_again(damaged_copy):
    (damaged_copy / "dtd" / "dtd" / "labels" / "test1.txt").unlink()
    with pytest.raises(DataFileError, match=r"test1.txt is missing.*delete .*dtd and fetch it"):
        DTD(root=str(damaged_copy), download=True).dataset("test")


@pytest.fixture
def damaged_copy(fake_vision, tmp_path):
    import shutil

    for folder in ("dtd", "places365"):
        shutil.copytree(fake_vision / folder, tmp_path / "data" / folder)
    return tmp_path / "data"


def test_download_fetches_nothing_when_the_files_are_there(fake_vision, monkeypatch):
    import torchvision.datasets.dtd
    import torchvision.datasets.places365

    def refuse(*args, **kwargs):
        raise AssertionError(f"downloaded {args}")

    for module in (torchvision.datasets.dtd, torchvision.datasets.places365):
        monkeypatch.setattr(module, "download_and_extract_archive", refuse)
    assert len(DTD(download=True).dataset("test")) == fakedata.N_TEST
    assert len(Places365(download=True).dataset("test")) == fakedata.N_TEST


def test_download_uses_torchvision_s_published_archives(tmp_path, monkeypatch):
    import torchvision.datasets.dtd
    import torchvision.datasets.places365

    fetched = []

    def offline(url, download_root, md5=None, **kwargs):
        fetched.append((url, Path(download_root), md5))
        raise OSError("no network in this test")

    for module in (torchvision.datasets.dtd, torchvision.datasets.places365):
        monkeypatch.setattr(module, "download_and_extract_archive", offline)
    with pytest.raises(DataFileError, match="DTD test split"):
        DTD(root=str(tmp_path), download=True).dataset("test")
    with pytest.raises(DataFileError, match="Places365 test split"):
        Places365(root=str(tmp_path), download=True).dataset("test")
    assert fetched == [
        (
            "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
            tmp_path / "dtd",
            "fff73e5086ae6bdbea199a49dfb8a4c1",
        ),
        (
            "http://data.csail.mit.edu/places/places365/filelist_places365-standard.tar",
            tmp_path / "places365",
            "35a0585fee1fa656440f3ab298f8479c",
        ),
    ]


def test_bad_dtd_and_places_options_name_the_fix():
    with pytest.raises(ValueError, match=r"partition must be one of 1, 2, .*10, got 11"):
        DTD(partition=11)
    with pytest.raises(ValueError, match="size must be a positive number of pixels or None"):
        Places365(size=0)
    with pytest.raises(ValueError, match=r"unknown split 'all'"):
        Places365(download=False).dataset("all")


def test_textures_and_places_as_cifar10_ood_sets_from_yaml(fake_vision):
    """The paper-scale benchmark's far-OOD sets beside CIFAR-10, named by their short names."""
    import jsonargparse

    import lit_rev.cli  # noqa: F401  (registers the project's classes, as `python -m lit_rev` does)

    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(ImageDataModule, "data")
    ood = "[{class_path: DTD, init_args: {download: false}}, Places365]"
    cfg = parser.parse_args(["--data.dataset=CIFAR10", f"--data.ood={ood}", "--data.batch_size=8"])
    dm = parser.instantiate_classes(cfg).data
    assert dm.test_names == ["cifar10", "dtd", "places365"]
    dm.setup("test")
    for loader, n in zip(dm.test_dataloader(), (fakedata.N_TEST,) * 3, strict=True):
        x, y = next(iter(loader))
        assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.long
        assert len(loader.dataset) == n


def test_lazy_sets_survive_pickling_for_loader_workers(fake_vision):
    import pickle

    for source in (DTD(download=False), Places365(download=False)):
        ds = source.dataset("train")
        assert torch.equal(pickle.loads(pickle.dumps(ds))[5][0], ds[5][0])

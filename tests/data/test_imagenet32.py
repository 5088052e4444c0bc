"""Downsampled ImageNet 32x32 read from tiny files in its published npz layout."""

import shutil

import numpy as np
import pytest
import torch

from lit_rev.data import DataFileError, ImageDataModule, ImageNet32
from lit_rev.data.imagenet32 import TRAIN_FILES
from tests import fakedata
from tests.fakedata import IMAGENET32_MARKERS, N_TEST, N_TRAIN


def file_labels(base, names):
    return np.concatenate([np.load(base / name)["labels"] for name in names])


def test_reads_the_published_layout(fake_vision):
    source = ImageNet32()
    train, test = source.dataset("train"), source.dataset("test")
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    x, y = test[0]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 32, 32) and isinstance(y, int)
    # the ten training files in order, then nothing else
    first = np.load(fake_vision / "imagenet32" / "train_data_batch_1.npz")["data"][0]
    assert torch.equal(train[0][0].flatten(), torch.from_numpy(first))


def test_rows_are_red_green_blue_planes(fake_vision):
    x, _ = ImageNet32().dataset("test")[0]
    for (c, h, w), value in IMAGENET32_MARKERS.items():
        assert int(x[c, h, w]) == value
    assert int(x.sum()) == sum(IMAGENET32_MARKERS.values())  # zero everywhere else


def test_labels_count_from_zero(fake_vision):
    base = fake_vision / "imagenet32"
    source = ImageNet32()
    train, test = source.dataset("train"), source.dataset("test")
    assert train.labels.tolist() == (file_labels(base, TRAIN_FILES) - 1).tolist()
    assert test.labels.tolist() == (file_labels(base, ["val_data.npz"]) - 1).tolist()
    assert int(test.labels.min()) == 0 and int(test.labels.max()) == 999


def test_short_name_resolves_in_yaml(fake_vision):
    import jsonargparse

    import lit_rev.cli  # noqa: F401  (registers the project's classes, as `python -m lit_rev` does)

    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(ImageDataModule, "data")
    cfg = parser.parse_args(["--data.dataset=ImageNet32", "--data.ood=[CIFAR10, CIFAR100, SVHN]"])
    data = parser.instantiate_classes(cfg).data
    assert isinstance(data.source, ImageNet32)
    assert data.test_names == ["imagenet32", "cifar10", "cifar100", "svhn"]


def test_archive_folders_are_found(fake_vision, tmp_path):
    base = tmp_path / "imagenet32"
    archives = (("Imagenet32_train_npz", TRAIN_FILES), ("Imagenet32_val_npz", ["val_data.npz"]))
    for folder, names in archives:
        (base / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(fake_vision / "imagenet32" / name, base / folder / name)
    source = ImageNet32(root=str(tmp_path))
    assert (len(source.dataset("train")), len(source.dataset("test"))) == (N_TRAIN, N_TEST)


def test_missing_file_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_REV_DATA", str(tmp_path))
    with pytest.raises(DataFileError) as info:
        ImageNet32().dataset("test")
    message = str(info.value)
    assert str(tmp_path / "imagenet32" / "val_data.npz") in message
    assert "Imagenet32_val_npz.zip" in message and "login" in message and "LIT_REV_DATA" in message


def test_one_missing_training_file_is_named(fake_vision, tmp_path):
    shutil.copytree(fake_vision / "imagenet32", tmp_path / "imagenet32")
    (tmp_path / "imagenet32" / "train_data_batch_7.npz").unlink()
    message = r"train_data_batch_7\.npz is missing.*Imagenet32_train_npz\.zip"
    with pytest.raises(DataFileError, match=message):
        ImageNet32(root=str(tmp_path)).dataset("train")


@pytest.mark.parametrize("damage", ["zeros", "flip_a_byte"])
def test_damaged_file_is_named(fake_vision, tmp_path, damage):
    shutil.copytree(fake_vision / "imagenet32", tmp_path / "imagenet32")
    path = tmp_path / "imagenet32" / "val_data.npz"
    if damage == "zeros":
        fakedata.zero_out(path)
    else:  # one byte inside the pixel data: only the zip's CRC-32 can tell
        raw = bytearray(path.read_bytes())
        raw[400] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match=r"val_data\.npz.*corrupt"):
        ImageNet32(root=str(tmp_path)).dataset("test")


def test_zero_based_labels_are_refused(fake_vision, tmp_path):
    (tmp_path / "imagenet32").mkdir()
    path = tmp_path / "imagenet32" / "val_data.npz"
    np.savez(path, data=np.zeros((3, 3072), np.uint8), labels=np.array([0, 5, 999]))
    message = r"val_data\.npz: labels must be 1\.\.1000.*found 0\.\.999"
    with pytest.raises(DataFileError, match=message):
        ImageNet32(root=str(tmp_path)).dataset("test")


def test_wrong_row_length_is_refused(tmp_path):
    (tmp_path / "imagenet32").mkdir()
    path = tmp_path / "imagenet32" / "val_data.npz"
    np.savez(path, data=np.zeros((3, 64 * 64 * 3), np.uint8), labels=np.ones(3, np.int64))  # 64x64
    message = r"val_data\.npz: 'data' has dtype uint8 and shape \(3, 12288\)"
    with pytest.raises(DataFileError, match=message):
        ImageNet32(root=str(tmp_path)).dataset("test")


def test_as_an_ood_set_it_is_read_before_training(fake_vision, tmp_path):
    from lit_rev.data import Digits

    (tmp_path / "imagenet32").mkdir()
    dm = ImageDataModule(Digits(), ood=[ImageNet32(root=str(tmp_path))], batch_size=8)
    message = "OOD set 'imagenet32', test split: .*val_data.npz is missing"
    with pytest.raises(DataFileError, match=message):
        dm.setup("fit")

import pytest
import torch

from lit_rev.data import CIFAR10, CIFAR100, MNIST, SVHN, CelebA, DataFileError, FashionMNIST, ImageDataModule
from fakedata import N_TEST, N_TRAIN


@pytest.mark.parametrize(
    "cls, shape",
    [(MNIST, (1, 28, 28)), (FashionMNIST, (1, 28, 28)), (CIFAR10, (3, 32, 32)), (CIFAR100, (3, 32, 32)), (SVHN, (3, 32, 32)), (CelebA, (3, 148, 148))],
)
def test_torchvision_sets_load_their_real_format(fake_vision, cls, shape):
    source = cls(download=False)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        ds = source.dataset(split)
        assert len(ds) == n
        x, y = ds[0]
        assert x.dtype == torch.uint8 and tuple(x.shape) == shape
        assert isinstance(y, int)


def test_cifar_pixels_are_read_in_channel_order(fake_vision):
    import pickle

    with open(fake_vision / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f)["data"][0]
    x, _ = CIFAR10(download=False).dataset("test")[0]
    assert torch.equal(x.flatten(), torch.from_numpy(raw))  # CIFAR stores R plane, G plane, B plane


def test_svhn_label_10_means_digit_0(fake_vision):
    from scipy.io import loadmat

    y = loadmat(fake_vision / "test_32x32.mat")["y"].ravel()
    labels = [SVHN(download=False).dataset("test")[i][1] for i in range(len(y))]
    assert labels == [0 if v == 10 else int(v) for v in y]


def test_any_set_converts_to_any_shape(fake_vision):
    dm = ImageDataModule(CIFAR10(download=False), ood=[MNIST(download=False), CelebA(download=False)], channels=1, image_size=28, batch_size=8)
    dm.setup("test")
    for loader in dm.test_dataloader():
        x, _ = next(iter(loader))
        assert x.shape[1:] == (1, 28, 28)


def test_missing_set_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_REV_DATA", str(tmp_path))
    with pytest.raises(DataFileError, match=str(tmp_path)):
        CIFAR10(download=False).dataset("train")


def test_corrupt_file_is_refused(fake_vision_root, tmp_path, monkeypatch):
    import shutil

    import fakedata

    shutil.copytree(fake_vision_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    fakedata.patch_md5(monkeypatch, fake_vision_root)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with pytest.raises(DataFileError, match="corrupt"):
        CIFAR10(root=str(tmp_path), download=False).dataset("test")

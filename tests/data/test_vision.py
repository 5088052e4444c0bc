from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule

from lit_rev.data import (
    CIFAR10,
    CIFAR100,
    DTD,
    MNIST,
    SVHN,
    CelebA,
    DataFileError,
    Digits,
    FashionMNIST,
    Grayed,
    ImageDataModule,
    LFWCrops,
    Places365,
)
from lit_rev.data.images import ImageTensors
from tests import fakedata
from tests.fakedata import N_TEST, N_TRAIN
from tests.trainers import quiet_trainer


@pytest.mark.parametrize(
    "cls, shape",
    [
        (MNIST, (1, 28, 28)),
        (FashionMNIST, (1, 28, 28)),
        (CIFAR10, (3, 32, 32)),
        (CIFAR100, (3, 32, 32)),
        (SVHN, (3, 32, 32)),
        (CelebA, (3, 148, 148)),
        (DTD, (3, 32, 32)),
        (Places365, (3, 32, 32)),
    ],
)
def test_torchvision_sets_load_their_real_format(fake_vision, cls, shape):
    source = cls(download=False)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        ds = source.dataset(split)
        assert len(ds) == n
        for i in (0, n - 1):
            x, y = ds[i]
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
    dm = ImageDataModule(
        CIFAR10(download=False),
        ood=[MNIST(download=False), CelebA(download=False)],
        channels=1,
        image_size=28,
        batch_size=8,
    )
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

    from tests import fakedata

    shutil.copytree(fake_vision_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    fakedata.patch_md5(monkeypatch, fake_vision_root)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "r+b") as f:
        f.seek(100)
        f.write(b"garbage")
    with pytest.raises(DataFileError, match="corrupt"):
        CIFAR10(root=str(tmp_path), download=False).dataset("test")


# --- damaged files name themselves; every set is read before training ---------------------------

# (source class, file relative to the data root, split that reads it)
DAMAGED = [
    (MNIST, "MNIST/raw/t10k-images-idx3-ubyte", "test"),
    (MNIST, "MNIST/raw/t10k-labels-idx1-ubyte", "test"),
    (FashionMNIST, "FashionMNIST/raw/train-images-idx3-ubyte", "train"),
    (CIFAR10, "cifar-10-batches-py/test_batch", "test"),
    (CIFAR10, "cifar-10-batches-py/data_batch_3", "train"),
    (CIFAR100, "cifar-100-python/train", "train"),
    (SVHN, "test_32x32.mat", "test"),
    (CelebA, "celeba/list_eval_partition.txt", "test"),
    (CelebA, "celeba/img_align_celeba/000045.jpg", "test"),
    (DTD, "dtd/dtd/labels/test1.txt", "test"),
    (DTD, "dtd/dtd/labels/val1.txt", "train"),
    (DTD, "dtd/dtd/images/braided/braided_0007.jpg", "all"),
    (Places365, "places365/places365_val.txt", "test"),
    (Places365, "places365/categories_places365.txt", "train"),
    (Places365, "places365/val_256/Places365_val_00000005.jpg", "test"),
    (Places365, "places365/data_256_standard/c/canyon/00000004.jpg", "train"),
]


@pytest.fixture
def damaged_root(fake_vision, tmp_path):
    """A private copy of the fake sets (torchvision's MD5 tables still name the intact files)."""
    import shutil

    return Path(shutil.copytree(fake_vision, tmp_path / "data"))


@pytest.mark.parametrize("cls, relative, split", DAMAGED, ids=[d[1] for d in DAMAGED])
def test_zeroed_file_is_named_with_the_fix(damaged_root, cls, relative, split):
    fakedata.zero_out(damaged_root / relative)
    with pytest.raises(DataFileError) as info:
        cls(root=str(damaged_root), download=False).dataset(split)
    message = str(info.value)
    assert str(damaged_root / relative) in message
    assert "corrupt" in message and ("delete" in message or "extract" in message)


def test_truncated_mnist_file_is_named(damaged_root):
    path = damaged_root / "MNIST/raw/t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte is corrupt or truncated"):
        MNIST(root=str(damaged_root), download=False).dataset("test")


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST])
def test_a_labels_file_shorter_than_its_images_file_stops_setup(damaged_root, cls):
    """Both idx files are whole by their own headers but disagree: setup names both, with
    their counts, instead of a worker failing on the first image without a label."""
    import numpy as np

    raw = damaged_root / cls.__name__ / "raw"
    fakedata._idx(raw / "train-labels-idx1-ubyte", np.zeros(N_TRAIN - 3, dtype=np.uint8))
    dm = ImageDataModule(cls(root=str(damaged_root), download=False), batch_size=8)
    with pytest.raises(DataFileError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert f"{raw / 'train-images-idx3-ubyte'} holds {N_TRAIN} images but" in message
    assert f"{raw / 'train-labels-idx1-ubyte'} holds {N_TRAIN - 3} labels" in message
    assert "delete both and fetch them again" in message


def test_image_tensors_need_one_label_per_image():
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        ImageTensors(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))


def test_missing_file_is_named(damaged_root):
    (damaged_root / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(DataFileError, match=r"data_batch_2 is missing. Set download=True"):
        CIFAR10(root=str(damaged_root), download=False).dataset("train")


class _StepCounter(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        return self.layer(batch[0].float().mean().view(1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_corrupt_ood_file_stops_fit_before_the_first_step(damaged_root, tmp_path):
    fakedata.zero_out(damaged_root / "test_32x32.mat")
    ood = [LFWCrops(), SVHN(root=str(damaged_root), download=False)]
    dm = ImageDataModule(Digits(), ood=ood, batch_size=8)
    model = _StepCounter()
    trainer = quiet_trainer(tmp_path, max_steps=2)
    with pytest.raises(DataFileError, match=r"OOD set 'svhn'.*test_32x32\.mat is corrupt"):
        trainer.fit(model, datamodule=dm)
    assert model.steps == 0


def test_setup_fit_reads_every_set_and_names_every_bad_file(damaged_root):
    fakedata.zero_out(damaged_root / "test_32x32.mat")
    fakedata.zero_out(damaged_root / "MNIST/raw/t10k-labels-idx1-ubyte")
    root = str(damaged_root)
    ood = [SVHN(root=root, download=False), Grayed(MNIST(root=root, download=False))]
    dm = ImageDataModule(CIFAR10(root=str(damaged_root), download=False), ood=ood, batch_size=8)
    with pytest.raises(DataFileError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert message.startswith("2 data sets cannot be read")
    assert "test_32x32.mat is corrupt" in message and "t10k-labels-idx1-ubyte is corrupt" in message
    with pytest.raises(DataFileError, match=r"test_32x32\.mat"):
        dm.prepare_data()  # without a trainer: every split


def test_sets_read_before_training_are_not_read_again(fake_vision, monkeypatch):
    opened = []
    for cls in (CIFAR10, SVHN):
        original = cls._open

        def counted(self, split, _original=original):
            opened.append((type(self).__name__, split))
            return _original(self, split)

        monkeypatch.setattr(cls, "_open", counted)
    ood = [SVHN(download=False), Grayed(factor=0.5)]
    dm = ImageDataModule(CIFAR10(download=False), ood=ood, batch_size=8)
    dm.prepare_data()
    assert sorted(opened) == [("CIFAR10", "test"), ("CIFAR10", "train"), ("SVHN", "test")]
    dm.setup("fit")
    dm.setup("test")
    assert len(opened) == 3 and len(dm.test_sets) == 3

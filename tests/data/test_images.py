import gzip

import pytest
import torch

import lit_rev.data.files as files
from lit_rev.data import (
    ConstantImages,
    DataFileError,
    Digits,
    Grayed,
    ImageDataModule,
    LFWCrops,
    MNIST5k,
    NaturalPatches,
)
from lit_rev.data.transforms import augment, convert, gray_images, quantize


@pytest.mark.parametrize(
    "source, n_train, n_test, shape",
    [
        (MNIST5k(), 4000, 1000, (1, 28, 28)),
        (Digits(), 1438, 359, (1, 8, 8)),
        (LFWCrops(), 160, 40, (1, 25, 25)),
        (ConstantImages(n=10), 8, 2, (3, 32, 32)),
    ],
)
def test_embedded_sets(source, n_train, n_test, shape):
    train, test = source.dataset("train"), source.dataset("test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert len(source.dataset("all")) == n_train + n_test
    x, label = test[0]
    assert x.dtype == torch.uint8 and tuple(x.shape) == shape and isinstance(label, int)
    assert train.images.float().std() > 1 or isinstance(source, ConstantImages)


def test_mnist5k_is_real_digits_with_stratified_splits():
    source = MNIST5k()
    ds = source.dataset("all")
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert torch.bincount(source.dataset("test").labels).tolist() == [100] * 10
    assert torch.bincount(source.dataset("train").labels).tolist() == [400] * 10
    mean = ds.images.float().mean() / 255
    assert 0.1 < mean < 0.15  # MNIST's mean intensity is about 0.13


def test_natural_patches_train_and_test_do_not_overlap():
    source = NaturalPatches(
        patch_size=16, stride=8, photos=["camera"], downscale=1.0, test_fraction=0.25
    )
    train, test = source.dataset("train"), source.dataset("test")
    assert len(train) > 3 * len(test) > 0
    # the test band starts at column 384 of the 512-wide photo; no training patch reaches past it
    train_set = {bytes(x.numpy().tobytes()) for x in train.images}
    assert not any(bytes(x.numpy().tobytes()) in train_set for x in test.images)


def test_natural_patches_are_deterministic():
    a = NaturalPatches(photos=["camera", "astronaut"]).dataset("test").images
    b = NaturalPatches(photos=["camera", "astronaut"]).dataset("test").images
    assert torch.equal(a, b)


def test_rgb_patches():
    x, _ = NaturalPatches(photos=["astronaut"], rgb=True).dataset("test")[0]
    assert x.shape[0] == 3


def test_wrong_checksum_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(b"not the digits")
    monkeypatch.setattr(files, "SHIPPED", {"mnist_5k.csv.gz": files.SHIPPED["mnist_5k.csv.gz"]})
    with pytest.raises(DataFileError, match=r"checksum mismatch for .*mnist_5k\.csv\.gz"):
        files.verified_path(bad, files.SHIPPED["mnist_5k.csv.gz"])


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataFileError, match=r"not found: .*nothing\.csv"):
        files.verified_path(tmp_path / "nothing.csv", None)


def test_corrupt_shipped_file_gives_one_clear_error(tmp_path, monkeypatch):
    corrupt = tmp_path / "mnist_5k.csv.gz"
    corrupt.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    monkeypatch.setattr("lit_rev.data.images.shipped_file", lambda name: corrupt)
    with pytest.raises(DataFileError, match=r"mnist_5k\.csv\.gz"):
        MNIST5k().dataset("train")


def test_convert_channels_and_size():
    rgb = torch.randint(0, 256, (5, 3, 40, 30), dtype=torch.uint8)
    assert convert(rgb, 1, 28).shape == (5, 1, 28, 28)
    gray = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)
    out = convert(gray, 3, 8)
    assert out.shape == (3, 8, 8) and torch.equal(out[0], gray[0]) and torch.equal(out[2], gray[0])
    assert torch.equal(convert(gray, 1, 8), gray)  # nothing to do


def test_quantize_keeps_top_bits():
    x = torch.tensor([0, 7, 8, 255], dtype=torch.uint8)
    assert quantize(x, 5).tolist() == [0, 0, 1, 31]
    assert quantize(x, 8) is x
    with pytest.raises(ValueError):
        quantize(x, 9)


def test_graying_shrinks_variance_and_keeps_mean():
    x = torch.randint(
        0, 256, (200, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    mean = x.float().mean(dim=(0, 2, 3)).view(-1, 1, 1)

    def channel_std(t):
        return t.float().transpose(0, 1).flatten(1).std(dim=1)

    for factor in (1.0, 0.5, 0.0):
        g = gray_images(x, factor, mean).float()
        assert torch.allclose(g.mean(dim=(0, 2, 3)), mean.flatten(), atol=0.6)
        assert torch.allclose(channel_std(g), factor * channel_std(x), atol=0.6)


def test_grayed_source_of_another_set():
    ds = Grayed(Digits(), factor=0.25).dataset("test")
    base = Digits().dataset("test")
    assert len(ds) == len(base) and ds.images.float().std() < 0.3 * base.images.float().std()


def test_augmentation_flip_and_crop():
    torch.manual_seed(0)
    x = torch.arange(16, dtype=torch.uint8).view(1, 4, 4)
    flips = [torch.equal(augment(x, "flip"), x.flip(-1)) for _ in range(50)]
    assert 5 < sum(flips) < 45
    assert augment(x, "crop_flip", pad=1).shape == x.shape
    with pytest.raises(ValueError):
        augment(x, "rotate")


def test_datamodule_split_is_seeded_and_disjoint():
    def split(seed):
        dm = ImageDataModule(Digits(), batch_size=16, val_fraction=0.2, seed=seed)
        dm.setup("fit")
        return dm.train_set.indices, dm.val_set.indices

    a, b = split(0), split(0)
    assert a == b and split(1) != a
    assert not set(a[0]) & set(a[1]) and len(a[0]) + len(a[1]) == 1438


def test_datamodule_named_ood_sets_in_common_shape():
    dm = ImageDataModule(
        MNIST5k(),
        ood=[LFWCrops(), Grayed(factor=0.5), Digits(name="sklearn-digits"), Digits()],
        n_bits=5,
        batch_size=32,
        max_test=100,
    )
    dm.setup("test")
    assert dm.test_names == ["mnist5k", "lfwcrops", "mnist5k-gray0.5", "sklearn-digits", "digits"]
    loaders = dm.test_dataloader()
    assert len(loaders) == 5
    for loader in loaders:
        x, _ = next(iter(loader))
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.uint8 and int(x.max()) < 32
    # the grayed set is the in-distribution *test* split, grayed
    assert len(dm.test_sets[2]) == 100 and len(dm.test_sets[1]) == 40


def test_augmentation_never_touches_test_sets():
    dm = ImageDataModule(Digits(), ood=[LFWCrops()], augment="crop_flip", batch_size=8)
    dm.setup("fit")
    dm.setup("test")
    first = [next(iter(loader))[0] for loader in dm.test_dataloader()]
    again = [next(iter(loader))[0] for loader in dm.test_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_bits"):
        ImageDataModule(Digits(), n_bits=0)
    with pytest.raises(ValueError, match="augment"):
        ImageDataModule(Digits(), augment="mixup")
    with pytest.raises(ValueError, match="split"):
        Digits().dataset("validation")

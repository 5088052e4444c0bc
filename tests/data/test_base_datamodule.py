"""What every DataModule shares through ``BaseDataModule``, checked once for all of them.

Caps are seeded subsets in the data's order, the same seed gives the same subset, training
loaders shuffle and drop a ragged batch, and every other loader serves its set in order.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from lit_rev.data import (
    AdultDataModule,
    BaseDataModule,
    COMPASDataModule,
    ConstantImages,
    Digits,
    GermanDataModule,
    ImageDataModule,
    ImageNetDataModule,
)
from tests.revnet.fake_imagenet import write_fake_imagenet

CAPS = {"train": 40, "test": 24}


def _image(seed, capped, root):
    caps = {"max_train": CAPS["train"], "max_test": CAPS["test"]} if capped else {}
    return ImageDataModule(
        Digits(), ood=[ConstantImages(n=30, size=8)], batch_size=16, seed=seed, **caps
    )


def _imagenet(seed, capped, root):
    caps = {"max_train": 5, "max_val": 3} if capped else {}
    return ImageNetDataModule(
        root=str(root), batch_size=2, image_size=16, resize=20, num_workers=0, seed=seed, **caps
    )


def _tabular(cls):
    def build(seed, capped, root):
        caps = {"max_train": CAPS["train"], "max_test": CAPS["test"]} if capped else {}
        return cls(batch_size=16, test_batch_size=32, seed=seed, **caps)

    return build


BUILDERS = {
    ImageDataModule: _image,
    ImageNetDataModule: _imagenet,
    AdultDataModule: _tabular(AdultDataModule),
    GermanDataModule: _tabular(GermanDataModule),
    COMPASDataModule: _tabular(COMPASDataModule),
}
CLASSES = pytest.mark.parametrize("cls", list(BUILDERS), ids=lambda c: c.__name__)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    # 4 train and 4 val images of each of the two classes, all of one size: a seeded random
    # crop of one image is then the same crop of any other
    return write_fake_imagenet(tmp_path_factory.mktemp("imagenet"), per_class=4)


def _built(cls, seed, capped, root):
    dm = BUILDERS[cls](seed, capped, root)
    dm.setup("fit")
    dm.setup("test")
    return dm


def _digest(item) -> str:
    return hashlib.sha256(
        b"".join(torch.as_tensor(t).contiguous().numpy().tobytes() for t in item)
    ).hexdigest()


def _fingerprints(dataset) -> list[str]:
    """One digest per item; random items (ImageNet's training crops) are seeded per item."""
    random_items = _digest(dataset[0]) != _digest(dataset[0])
    out = []
    for i in range(len(dataset)):
        if random_items:
            torch.manual_seed(0)
        out.append(_digest(dataset[i]))
    return out


def _is_ordered_subset(part: list[str], whole: list[str]) -> bool:
    """Whether ``part`` is ``whole`` with some items left out (order kept)."""
    rest = iter(whole)
    return all(any(p == w for w in rest) for p in part)


@CLASSES
def test_each_datamodule_is_a_base_datamodule(cls):
    assert issubclass(cls, BaseDataModule)


@CLASSES
def test_caps_are_seeded_subsets_in_the_data_order(cls, imagenet_root):
    full = _built(cls, 0, capped=False, root=imagenet_root)
    capped = _built(cls, 0, capped=True, root=imagenet_root)
    again = _built(cls, 0, capped=True, root=imagenet_root)
    other_seed = _built(cls, 1, capped=True, root=imagenet_root)
    for split, cap in (("train", capped.max_train), ("test", capped.max_test)):
        whole = _fingerprints(getattr(full, f"{split}_set"))
        part = _fingerprints(getattr(capped, f"{split}_set"))
        assert cap is not None and len(part) == cap < len(whole), split
        assert _is_ordered_subset(part, whole), split
        assert part == _fingerprints(getattr(again, f"{split}_set")), split
    # another seed draws other training rows (and, for the sets it splits, another split)
    assert _fingerprints(capped.train_set) != _fingerprints(other_seed.train_set)


@CLASSES
def test_only_training_batches_are_shuffled(cls, imagenet_root):
    dm = _built(cls, 0, capped=True, root=imagenet_root)
    train = dm.train_dataloader()
    assert isinstance(train.sampler, RandomSampler) and train.batch_size == dm.batch_size
    assert train.drop_last == (len(dm.train_set) > dm.batch_size)
    assert len(list(train)) == len(dm.train_set) // dm.batch_size

    evaluation = [dm.val_dataloader()]
    for loaders in (dm.test_dataloader(), dm.predict_dataloader()):
        evaluation += loaders if isinstance(loaders, list) else [loaders]
    for loader in evaluation:
        assert isinstance(loader.sampler, SequentialSampler)
        assert not loader.drop_last and loader.batch_size == dm.test_batch_size
    # the test and prediction loaders serve the test set, whole and in order
    test = dm.test_dataloader()
    test = test[0] if isinstance(test, list) else test
    predict = dm.predict_dataloader()
    predict = predict[0] if isinstance(predict, list) else predict
    assert test.dataset is dm.test_set and predict.dataset is dm.test_set
    served = [torch.cat([torch.as_tensor(batch[k]) for batch in test]) for k in (0, 1)]
    items = [dm.test_set[i] for i in range(len(dm.test_set))]
    for k in (0, 1):
        assert torch.equal(served[k], torch.stack([torch.as_tensor(item[k]) for item in items]))


@CLASSES
def test_no_validation_split_means_no_validation_loader(cls, imagenet_root):
    dm = BUILDERS[cls](0, True, imagenet_root)
    dm.val_set = None
    assert dm.val_dataloader() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_test": -1}, r"max_test = -1: give a whole number >= 1 \(or None for no cap\)"),
        ({"max_test": 0}, "max_test = 0"),
        ({"max_train": -5}, "max_train = -5"),
        ({"batch_size": 0}, "batch_size = 0: give a whole number >= 1$"),
        ({"test_batch_size": -2}, "test_batch_size = -2"),
        ({"num_workers": -1}, "num_workers = -1: give 0 or more"),
    ],
)
def test_a_cap_or_size_below_one_is_refused_naming_it(kwargs, message):
    from lit_rev.data.base import BaseDataModule

    with pytest.raises(ValueError, match=message):
        BaseDataModule(**{"batch_size": 8, **kwargs})

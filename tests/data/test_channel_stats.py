"""Per-channel normalisation statistics: every classifier config uses its own data set's."""

import inspect
from pathlib import Path

import pytest
import yaml

import lit_rev.data as data
from lit_rev.data import CIFAR10, CIFAR100, MNIST, Digits, ImageDataModule, MNIST5k
from lit_rev.revnet.module import ImageClassifier

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def _class_name(spec) -> str:
    name = spec if isinstance(spec, str) else spec["class_path"]
    return name.rsplit(".", 1)[-1]


def classifier_configs():
    """``(config, data set class, the model's mean, its std)`` of every ImageClassifier config
    on an ImageDataModule; a mean/std the config leaves out is the classifier's default."""
    defaults = inspect.signature(ImageClassifier).parameters
    out = []
    for path in CONFIGS:
        cfg = yaml.safe_load(path.read_text())
        model, dm = cfg.get("model") or {}, cfg.get("data") or {}
        if not model or not dm:
            continue
        if (_class_name(model), _class_name(dm)) != ("ImageClassifier", "ImageDataModule"):
            continue
        args = model.get("init_args") or {}
        mean = args.get("mean", defaults["mean"].default)
        std = args.get("std", defaults["std"].default)
        source = getattr(data, _class_name(dm["init_args"]["dataset"]))
        out.append((path, source, tuple(mean), tuple(std)))
    return out


def test_every_cifar100_config_is_found():
    names = {p.name for p, cls, _, _ in CLASSIFIERS if cls is CIFAR100}
    assert len(names) == 6 and all(n.endswith("_cifar100.yaml") for n in names)


CLASSIFIERS = classifier_configs()


@pytest.mark.parametrize(
    "config, source, mean, std", CLASSIFIERS, ids=[c[0].stem for c in CLASSIFIERS]
)
def test_classifier_configs_normalise_with_their_own_set(config, source, mean, std):
    assert source.channel_stats is not None, f"{source.__name__} has no published statistics"
    want_mean, want_std = source.channel_stats
    name = f"{config.name} on {source.__name__}"
    assert mean == pytest.approx(want_mean, abs=1e-4), f"{name}: mean {mean}, not {want_mean}"
    assert std == pytest.approx(want_std, abs=1e-4), f"{name}: std {std}, not {want_std}"


def test_cifar100_has_its_own_statistics():
    assert CIFAR100.channel_stats == ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    assert CIFAR100.channel_stats != CIFAR10.channel_stats  # no silent fallback to CIFAR-10's


def test_datamodule_gives_its_set_statistics_or_a_clear_error():
    assert ImageDataModule(CIFAR100(download=False)).channel_stats() == CIFAR100.channel_stats
    assert ImageDataModule(MNIST5k()).channel_stats() == MNIST.channel_stats
    with pytest.raises(ValueError, match="'digits' has no published channel statistics; set the"):
        ImageDataModule(Digits()).channel_stats()
    with pytest.raises(ValueError, match=r"for 3 channel.*channels=1"):
        ImageDataModule(CIFAR10(download=False), channels=1).channel_stats()

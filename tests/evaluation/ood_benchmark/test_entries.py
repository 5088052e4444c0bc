"""A classifier entry's detectors: fitted on the training split, ODIN's settings chosen on the
validation split only, the benchmark's defaults (ODIN and KNN "auto") and where they go."""

from pathlib import Path

import pytest
import torch
from torch import nn

from lit_rev.evaluation.ood_benchmark import (
    BENCHMARK_DETECTOR_ARGS,
    BenchmarkError,
    ClassifierEntry,
)
from lit_rev.evaluation.ood_benchmark import entries as entries_module
from lit_rev.evaluation.ood_benchmark.cache import cache_key
from lit_rev.ood.detectors import ODIN, ODIN_EPSILONS, ODIN_TEMPERATURES, knn_auto_k

REPO = Path(__file__).resolve().parents[3]
REVNET = str(REPO / "configs" / "revnet" / "quick_revnet38_mnist5k.yaml")


class TwoClassNet(nn.Module):
    """Logits ``x @ W.T`` of 2-dim inputs; the features are the inputs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False).double()
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[2.0, -1.0], [-1.0, 2.0]]))

    def features(self, x):
        return x.double()

    def forward(self, x):
        return self.linear(x.double())


class Loader:
    """Batches ``(x, y)`` of ``images``; iterable any number of times; records each pass."""

    def __init__(self, name, images, events, size=5):
        self.name, self.images, self.events, self.size = name, images, events, size

    def __iter__(self):
        self.events.append(self.name)
        for i in range(0, len(self.images), self.size):
            x = self.images[i : i + self.size]
            yield x, torch.zeros(len(x), dtype=torch.long)

    def __len__(self):
        return -(-len(self.images) // self.size)


class FakeData:
    """BenchmarkData's interface over known tensors: training, validation and test sets."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.events: list[str] = []
        self.train = torch.randn(40, 2, generator=g, dtype=torch.float64) + 2
        self.validation = torch.randn(15, 2, generator=g, dtype=torch.float64) + 2
        self.tests = {
            "in": torch.randn(10, 2, generator=g, dtype=torch.float64) + 2,
            "far": torch.randn(10, 2, generator=g, dtype=torch.float64) * 5,
        }
        self.names = list(self.tests)

    def train_loader(self):
        return Loader("train", self.train, self.events)

    def reference_loader(self):
        return Loader("validation", self.validation, self.events)

    def batches(self, progress, what):
        for name, x in self.tests.items():
            self.events.append(f"test:{name}")
            yield name, x


def test_odin_is_chosen_on_the_validation_split_only_before_any_test_set_is_read(monkeypatch):
    seen: list[torch.Tensor] = []
    calibrating = []
    original_calibrate, original_ascent = ODIN.calibrate, ODIN._ascent

    def calibrate(self, network, loader):
        calibrating.append(True)
        try:
            return original_calibrate(self, network, loader)
        finally:
            calibrating.pop()

    def ascent(self, network, x, temperature):
        if calibrating:
            seen.append(x.detach().clone())
        return original_ascent(self, network, x, temperature)

    monkeypatch.setattr(ODIN, "calibrate", calibrate)
    monkeypatch.setattr(ODIN, "_ascent", ascent)
    data = FakeData()
    entry = ClassifierEntry("c", REVNET, detectors=["odin", "knn"])
    entry.score([TwoClassNet()], data, torch.device("cpu"), progress=False)
    # every image ODIN's choice looked at is a validation image, each batch once per temperature
    per_pass = torch.cat(seen[:: len(ODIN_TEMPERATURES)])
    torch.testing.assert_close(per_pass, data.validation)
    assert len(seen) == len(ODIN_TEMPERATURES) * 3  # 15 validation images in batches of 5
    # ODIN chooses on the validation split, KNN fits on the training split, then the test sets
    assert data.events == ["validation", "train", "test:in", "test:far"]
    chosen = entry.chosen_settings()
    assert chosen["odin"]["temperature"] in ODIN_TEMPERATURES
    assert chosen["odin"]["epsilon"] in ODIN_EPSILONS
    assert chosen["odin"]["selection"]["images"] == 15
    assert chosen["knn"]["k"] == knn_auto_k(40) == 1 and chosen["knn"]["bank"] == 40


def test_the_papers_fixed_odin_setting_stays_available_and_is_not_chosen():
    data = FakeData()
    paper = {"odin": {"temperature": 1000, "epsilon": 0.0014}, "knn": {"k": 5}}
    entry = ClassifierEntry("c", REVNET, detectors=["odin", "knn"], detector_args=paper)
    entry.score([TwoClassNet()], data, torch.device("cpu"), progress=False)
    assert entry.chosen_settings() == {
        "odin": {"temperature": 1000.0, "epsilon": 0.0014},
        "knn": {"k": 5, "bank": 40},
    }
    assert "validation" not in data.events  # nothing to choose: the validation split unread


def test_the_benchmark_defaults_and_overrides_key_by_key():
    assert BENCHMARK_DETECTOR_ARGS == {
        "odin": {"temperature": "auto", "epsilon": "auto"},
        "knn": {"k": "auto"},
    }
    entry = ClassifierEntry("c", REVNET, detector_args={"odin": {"temperature": 1000}})
    assert entry.arguments("odin") == {"temperature": 1000, "epsilon": "auto"}
    assert entry.arguments("knn") == {"k": "auto"} and entry.arguments("msp") == {}


def test_bad_detector_args_stop_the_entry_naming_the_key():
    with pytest.raises(BenchmarkError, match=r"detector_args\.odin: ODIN: epsilon must be >= 0"):
        ClassifierEntry("c", REVNET, detector_args={"odin": {"epsilon": -1}})
    with pytest.raises(BenchmarkError, match=r"detector_args\.knn: detector 'knn' takes k"):
        ClassifierEntry("c", REVNET, detector_args={"knn": {"neighbours": 3}})


def test_a_changed_benchmark_default_is_another_cache_key(monkeypatch):
    entry = ClassifierEntry("c", REVNET, detectors=["knn"])
    settings = {"class_path": "ClassifierEntry", "init_args": {"name": "c", "config": REVNET}}
    before = cache_key(entry, settings, {}, None, 0, [])
    monkeypatch.setitem(entries_module.BENCHMARK_DETECTOR_ARGS, "knn", {"k": 50})
    assert cache_key(entry, settings, {}, None, 0, []) != before

"""The activation-memory meter keeps autograd's in-place check, and measures what plain
pass-through hooks measure."""

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.revnet import (
    ActivationMemoryMonitor,
    ImageClassifier,
    ResNet,
    RevNet,
    SavedTensorMeter,
)
from tests.trainers import quiet_trainer

INPLACE_ERROR = "modified by an inplace operation"


def _trainer(tmp_path, callbacks, max_steps=1):
    return quiet_trainer(tmp_path, max_steps=max_steps, callbacks=callbacks)


def _exp_then_inplace_mul(x: torch.Tensor) -> torch.Tensor:
    """``exp`` saves its output for backward; scaling that output in place afterwards corrupts it.

    Without a check the gradient of ``x`` comes out 4x too large (``4 exp(x)``, not ``exp(x)``).
    """
    y = x.exp()
    loss = (y * 1).sum()
    with torch.no_grad():
        y.mul_(4)
    return loss


def test_meter_keeps_autograd_inplace_check():
    x = torch.tensor([math.log(9.09)], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):  # plain autograd
        _exp_then_inplace_mul(x).backward()
    with SavedTensorMeter() as meter:
        loss = _exp_then_inplace_mul(x)
    assert meter.bytes == 8  # the one float64 that exp saved
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        loss.backward()
    assert x.grad is None  # nothing (let alone 36.36 instead of 9.09) reached x


def test_meter_allows_legitimate_inplace_ops_and_gives_plain_gradients():
    """In-place ops that autograd accepts (an in-place ReLU whose output is saved) still work."""
    torch.manual_seed(0)
    net = RevNet("revnet38", units=[1, 1], channels=[8, 8, 16], num_classes=4, in_channels=1)
    net = net.double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    grads = {}
    for metered in (False, True):
        for saving in (True, False):
            net.zero_grad()
            x.grad = None
            net.memory_saving = saving
            torch.manual_seed(1)
            with SavedTensorMeter(net) if metered else torch.enable_grad():
                a = x * 2
                a.relu_()
                loss = F.cross_entropy(net(a), y)
            loss.backward()
            grads[metered, saving] = [x.grad.clone()] + [p.grad.clone() for p in net.parameters()]
    for saving in (True, False):
        for g_meter, g_plain in zip(grads[True, saving], grads[False, saving], strict=True):
            assert torch.equal(g_meter, g_plain)


class _InplaceAfterSave(LightningModule):
    """A training step that modifies a tensor saved for backward: autograd must refuse it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((3,), math.log(9.09)))

    def training_step(self, batch, batch_idx):
        return _exp_then_inplace_mul(self.w)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("monitored", [False, True])
def test_monitor_does_not_hide_inplace_corruption(tmp_path, monitored):
    """Under the monitor the corrupted step fails as it does without it (before the fix it
    trained on silently)."""
    loader = DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2)
    callbacks = [ActivationMemoryMonitor()] if monitored else []
    with pytest.raises(RuntimeError, match=INPLACE_ERROR):
        _trainer(tmp_path, callbacks).fit(_InplaceAfterSave(), loader)


def _pass_through_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Reference: distinct storages saved for backward, counted by hooks that return the tensor
    as is (the meter's implementation before it kept the version check)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen.setdefault(s.data_ptr(), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize(
    "arch,saving", [("revnet38", True), ("revnet38", False), ("resnet32", None)]
)
def test_monitor_measures_what_pass_through_hooks_measure(tmp_path, arch, saving):
    torch.manual_seed(0)
    cls = RevNet if arch.startswith("rev") else ResNet
    backbone = cls(arch, units=[1, 1], channels=[8, 8, 16], num_classes=4, in_channels=1)
    if saving is not None:
        backbone.memory_saving = saving
    model = ImageClassifier(backbone, num_classes=4, mean=[0.5], std=[0.25])
    x, y = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 4, (8,))
    expected = _pass_through_bytes(model.train(), x, y)
    monitor = ActivationMemoryMonitor()
    _trainer(tmp_path, [monitor]).fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    measured = monitor.last["memory/saved_activations_mib"] * 2.0**20
    print(f"{arch} memory_saving={saving}: {measured:.0f} bytes saved for backward")
    assert measured == expected > 0

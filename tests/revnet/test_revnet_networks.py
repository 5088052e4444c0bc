"""RevNet builders, the classifier, the memory callback and the ImageNet data.

Builders are checked for their shapes and parameter counts.
"""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.data.imagenet import ImageNetDataModule
from lit_rev.revnet import (
    ActivationMemoryMonitor,
    ImageClassifier,
    ResNet,
    ReversibleBlock,
    RevNet,
    build,
)
from lit_rev.revnet.blocks import DownsampleCoupling
from lit_rev.revnet.networks import ARCHITECTURES, PAPER_PARAMS, resnet32, revnet38, revnet104
from tests.revnet.fake_imagenet import write_fake_imagenet
from tests.trainers import quiet_trainer


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_parameter_counts_match_the_paper(name):
    net = build(name, num_classes=1000 if ARCHITECTURES[name].imagenet else 10)
    count = net.num_parameters()
    print(f"{name}: {count / 1e6:.3f}M parameters (paper {PAPER_PARAMS[name] / 1e6:.2f}M)")
    if ARCHITECTURES[name].imagenet:  # paper: 44.5M and 45.2M
        assert abs(count - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01
    else:  # the paper rounds to 0.01M
        assert round(count / 1e6, 2) == PAPER_PARAMS[name] / 1e6


def test_revnet_shapes():
    net = revnet38()
    blocks = list(net.body.blocks)
    assert len(blocks) == 9
    # Stage 1 keeps its shape, so only the strided first units of stages 2 and 3 are stored.
    assert [type(b) for b in blocks].count(DownsampleCoupling) == 2
    assert all(isinstance(b, ReversibleBlock) for i, b in enumerate(blocks) if i not in (3, 6))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.out_channels == 112
    big = RevNet("revnet164")
    assert big.out_channels == 512
    assert [type(b) for b in big.body.blocks].count(
        DownsampleCoupling
    ) == 3  # 32 -> 128 widens stage 1
    assert revnet104().arch.units == (2, 2, 11, 2)
    assert resnet32(in_channels=1)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError):
        RevNet("revnet39")


def test_memory_saving_flag_is_switchable():
    net = revnet38(memory_saving=False)
    assert not net.memory_saving and not net.body.memory_saving
    net.memory_saving = True
    assert net.body.memory_saving
    out = net(torch.randn(2, 3, 16, 16))
    assert type(out.grad_fn).__name__ == "AddmmBackward0"


def _tiny_classifier(**kwargs):
    backbone = RevNet("revnet38", units=[1, 1], channels=[8, 8, 16], num_classes=4, in_channels=1)
    return ImageClassifier(backbone, num_classes=4, mean=[0.5], std=[0.25], **kwargs)


def test_classifier_normalises_uint8_and_reports_top_k():
    model = _tiny_classifier(top_k=[1, 3], milestones=[2, 4])
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert model(x).shape == (5, 4)
    expected = (x.float() / 255 - 0.5) / 0.25
    assert torch.allclose(model.normalize(x), expected)
    assert set(model.metrics) == {
        f"{s}_{m}" for s in ("train", "val", "test") for m in ("acc", "acc_top3")
    }
    config = model.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    decayed, kept = opt.param_groups
    assert all(p.dim() > 1 for p in decayed["params"]) and all(p.dim() == 1 for p in kept["params"])
    assert decayed["weight_decay"] == 2e-4 and kept["weight_decay"] == 0.0
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_memory_callback_logs_saved_bytes_and_peak_rss(tmp_path):
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 4, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    monitors, saved = {}, {}
    for saving in (True, False):
        model = _tiny_classifier()
        model.backbone.memory_saving = saving
        monitor = ActivationMemoryMonitor()
        trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[monitor])
        trainer.fit(model, loader)
        monitors[saving] = monitor.last
        saved[saving] = monitor.last["memory/saved_activations_mib"]
        assert monitor.last["memory/peak_rss_mib"] > 10
        assert "memory/saved_activations_mib" in trainer.logged_metrics
    assert 0 < saved[True] < saved[False] / 2


def test_imagenet_datamodule_serves_uint8_crops(tmp_path):
    write_fake_imagenet(tmp_path)
    dm = ImageNetDataModule(
        root=str(tmp_path), batch_size=3, image_size=32, resize=36, num_workers=0
    )
    dm.setup("fit")
    assert dm.num_classes == 2
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (3, 3, 32, 32)
    assert set(y.tolist()) <= {0, 1}
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (3, 32, 32)
    with pytest.raises(Exception, match="ImageNet"):
        ImageNetDataModule(root=str(tmp_path / "missing")).setup("fit")


@pytest.mark.parametrize("cls", [RevNet, ResNet])
@pytest.mark.parametrize("memory_saving", [False, True])
def test_features_reproduce_the_logits_through_the_last_layer(cls, memory_saving):
    torch.manual_seed(0)
    net = cls("revnet38", units=[1, 1], channels=[8, 8, 16], num_classes=4, in_channels=1)
    net.memory_saving = memory_saving
    x = torch.randn(3, 1, 8, 8)
    net.train()
    assert torch.equal(net(x), net.head(net.body(net.stem(x))))  # batch statistics
    net.eval()
    features = net.features(x)
    assert features.shape == (3, net.out_channels)
    logits = net(x)
    assert torch.equal(logits, net.head[-1](features))
    assert torch.equal(logits, net.head(net.body(net.stem(x))))  # forward as it was
    # checkpoint keys unchanged: the head is still BN (0), ReLU, pool, flatten, linear (4)
    assert [k for k in net.state_dict() if k.startswith("head.")] == [
        "head.0.weight",
        "head.0.bias",
        "head.0.running_mean",
        "head.0.running_var",
        "head.0.num_batches_tracked",
        "head.4.weight",
        "head.4.bias",
    ]


def test_classifier_features_normalise_then_ask_the_backbone():
    model = _tiny_classifier().eval()
    x = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    features = model.features(x)
    assert torch.equal(features, model.backbone.features(model.normalize(x)))
    assert torch.equal(model(x), model.backbone.head[-1](features))
    no_features = ImageClassifier(torch.nn.Flatten(), num_classes=4, mean=[0.5], std=[0.25])
    with pytest.raises(AttributeError, match="backbone Flatten has no features"):
        no_features.features(x)

"""The reversible transformer: exact gradients, memory flat in depth, DDP, the quick config."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_rev.cli import LitRevCLI
from lit_rev.revnet import (
    ImageClassifier,
    ReversibleSequence,
    ReversibleTransformerBlock,
    ReversibleViT,
    SavedTensorMeter,
)
from tests.ddp_helpers import assert_identical_parameters, fit_on_two_ranks

REPO = Path(__file__).resolve().parents[2]
QUICK = REPO / "configs" / "revnet" / "quick_revvit_mnist5k.yaml"


def _tiny_vit(**kwargs) -> ReversibleViT:
    args = dict(image_size=8, patch_size=2, width=16, depth=3, heads=2)
    args.update(kwargs)
    return ReversibleViT(**args)


def _gradients(net, x, y, memory_saving: bool, seed: int = 11) -> torch.Tensor:
    net.memory_saving = memory_saving
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # the same dropout masks for both runs
    F.cross_entropy(net(x), y).backward()
    return torch.cat([x.grad.flatten()] + [p.grad.flatten() for p in net.parameters()])


@pytest.mark.parametrize("coupling", ["additive", "affine"])
@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no_dropout", "dropout"])
def test_float64_gradients_equal_plain_autograd(coupling, dropout):
    torch.manual_seed(0)
    net = _tiny_vit(coupling=coupling, dropout=dropout).double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 4, 9])
    plain = _gradients(net, x, y, memory_saving=False)
    saving = _gradients(net, x, y, memory_saving=True)
    error = ((saving - plain).norm() / plain.norm()).item()
    print(f"reversible ViT, {coupling}, dropout {dropout}: float64 gradient error {error:.1e}")
    assert plain.norm() > 0
    assert error <= 1e-10
    if dropout:
        other = _gradients(net, x, y, memory_saving=False, seed=12)
        assert not torch.allclose(other, plain), "dropout had no effect"


def test_transformer_block_splits_features_and_inverts():
    torch.manual_seed(0)
    block = ReversibleTransformerBlock(width=12, heads=3, coupling="affine").double().eval()
    assert block.split_dim == -1 and block.coupling == "affine"
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
    assert y.shape == x.shape
    assert torch.allclose(block.inverse(y), x, rtol=0, atol=1e-13)


def test_saved_bytes_the_same_for_4_and_16_blocks():
    x = torch.randn(8, 1, 28, 28)
    saved, plain = {}, {}
    for depth in (4, 16):
        torch.manual_seed(0)
        net = ReversibleViT(depth=depth, width=32, patch_size=4)
        with SavedTensorMeter(net) as meter:
            net(x)
        saved[depth] = meter.bytes
        net.memory_saving = False
        with SavedTensorMeter(net) as meter:
            net(x)
        plain[depth] = meter.bytes
    print(
        f"bytes saved for the backward, 4 vs 16 blocks: {saved[4]} vs {saved[16]} (plain autograd:"
    )
    print(f"{plain[4]} vs {plain[16]})")
    assert abs(saved[16] - saved[4]) <= 0.10 * saved[4]
    assert plain[16] > 3 * plain[4], "the plain network's memory grows with depth"


def test_image_size_mismatch_names_the_setting():
    with pytest.raises(ValueError, match=r"image_size=8\) got images of size \(28, 28\)"):
        _tiny_vit()(torch.randn(1, 1, 28, 28))
    with pytest.raises(ValueError, match="heads=3 must divide"):
        ReversibleTransformerBlock(width=16, heads=3)


def test_image_classifier_adamw_option():
    model = ImageClassifier(_tiny_vit(), optimizer="adamw", lr=1e-3, mean=[0.5], std=[0.25])
    assert isinstance(model.configure_optimizers()["optimizer"], torch.optim.AdamW)
    sgd = ImageClassifier(_tiny_vit(), mean=[0.5], std=[0.25]).configure_optimizers()
    assert isinstance(sgd["optimizer"], torch.optim.SGD)
    with pytest.raises(ValueError, match="optimizer must be one of 'sgd', 'adamw', got 'adam'"):
        ImageClassifier(_tiny_vit(), optimizer="adam")


def test_quick_config_builds_a_memory_saving_reversible_vit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = LitRevCLI(args=["--config", str(QUICK)], run=False)
    backbone = cli.model.backbone
    assert isinstance(backbone, ReversibleViT) and backbone.memory_saving
    assert isinstance(backbone.body, ReversibleSequence)
    assert all(isinstance(b, ReversibleTransformerBlock) for b in backbone.body.blocks)
    assert cli.model.hparams.optimizer == "adamw"
    assert backbone.num_classes == cli.model.hparams.num_classes


TINY_VIT = """
seed_everything: 0
trainer:
  max_steps: 3
  limit_val_batches: 0
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
model:
  class_path: ImageClassifier
  init_args:
    num_classes: 10
    optimizer: adamw
    lr: 0.01
    backbone:
      class_path: lit_rev.revnet.ReversibleViT
      init_args: {image_size: 8, patch_size: 2, width: 16, depth: 2, heads: 2, dropout: 0.1}
    mean: [0.13]
    std: [0.31]
data:
  class_path: ImageDataModule
  init_args:
    dataset: {class_path: MNIST5k}
    image_size: 8
    max_train: 32
    val_fraction: 0.05
    batch_size: 8
"""


@pytest.mark.slow
def test_ddp_two_processes_end_with_identical_parameters(tmp_path):
    config = tmp_path / "tiny_vit.yaml"
    config.write_text(TINY_VIT)
    rank0, rank1 = fit_on_two_ranks(["--config", str(config)], tmp_path)
    assert_identical_parameters(rank0, rank1)
    torch.manual_seed(0)
    init = LitRevCLI(args=["--config", str(config)], run=False).model.state_dict()
    moved = [k for k in init if not torch.equal(init[k], rank0[k])]
    assert any("body.blocks.1.f" in k for k in moved) and any("body.blocks.0.g" in k for k in moved)

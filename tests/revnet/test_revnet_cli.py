"""The RevNet configs through ``python -m lit_rev``.

Every config parses, the ImageNet one runs, DDP matches one process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_rev.cli import LitRevCLI, main
from lit_rev.revnet import ImageClassifier
from tests.revnet.fake_imagenet import write_fake_imagenet

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "revnet").glob("*.yaml"))


def test_every_builder_has_cifar_configs():
    names = {p.stem for p in CONFIGS}
    for preset in ("resnet32", "resnet110", "resnet164", "revnet38", "revnet110", "revnet164"):
        assert {f"{preset}_cifar10", f"{preset}_cifar100"} <= names
    assert {"revnet104_imagenet", "quick_revnet38_mnist5k", "quick_resnet32_mnist5k"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = LitRevCLI(args=["--config", str(config)], run=False)
    assert isinstance(cli.model, ImageClassifier)
    backbone = cli.model.backbone
    assert backbone.num_classes == cli.model.hparams.num_classes
    assert backbone.memory_saving == type(backbone).reversible


@pytest.mark.slow
def test_imagenet_config_smoke_runs_on_fake_imagenet(tmp_path, monkeypatch):
    write_fake_imagenet(tmp_path / "data")
    monkeypatch.setenv("LIT_REV_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        str(REPO / "configs/revnet/revnet104_imagenet.yaml"),
        "--trainer.fast_dev_run=1",
        "--data.num_workers=0",
        "--trainer.enable_progress_bar=false",
        "--data.batch_size=2",
    ]
    cli = main(["fit", *args])
    assert cli.trainer.state.finished
    assert "memory/saved_activations_mib" in cli.trainer.logged_metrics
    main(["predict", *args])
    (written,) = tmp_path.glob("predictions*.csv")
    rows = written.read_text().splitlines()
    assert rows[0].startswith("set,position,dataset_index,predicted,label,prob_0")
    assert len(rows) == 1 + 2


TINY = """
trainer:
  max_steps: 2
  limit_val_batches: 0
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
model:
  class_path: ImageClassifier
  init_args:
    num_classes: 10
    backbone:
      class_path: lit_rev.revnet.RevNet
      init_args: {{units: [1, 2], channels: [8, 8, 16], in_channels: 1, memory_saving: {saving}}}
    mean: [0.13]
    std: [0.31]
data:
  class_path: ImageDataModule
  init_args:
    dataset: {{class_path: MNIST5k}}
    image_size: 8
    max_train: 16
    val_fraction: 0.05
    batch_size: {batch}
"""


def _fit(tmp_path: Path, name: str, batch: int, saving: bool, extra: list[str]) -> dict:
    run = tmp_path / name
    run.mkdir()
    (run / "config.yaml").write_text(TINY.format(batch=batch, saving=str(saving).lower()))
    cmd = [
        sys.executable,
        "-m",
        "lit_rev",
        "fit",
        "--config",
        "config.yaml",
        f"--trainer.default_root_dir={run}",
        *extra,
    ]
    env = dict(os.environ, LIT_REV_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(cmd, cwd=run, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "marked ready" not in done.stderr and "ready only once" not in done.stderr
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2
    return state["state_dict"]


def _emulate_ddp(config: Path, world_size: int, steps: int) -> dict:
    """One process doing what DDP does: each rank's shard through the model on its own (its own
    batch-norm statistics), the loss averaged over ranks, one optimiser step per global batch.
    Shards follow ``DistributedSampler``: ``randperm(n, seed + epoch)[rank::world_size]``."""
    cli = LitRevCLI(args=["--config", str(config)], run=False)
    model, dm = cli.model, cli.datamodule
    model.backbone.memory_saving = False
    dm.setup("fit")
    optimizer = model.configure_optimizers()["optimizer"]
    n = len(dm.train_set)
    model.train()
    for epoch in range(steps):  # one global batch per epoch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist()
        optimizer.zero_grad()
        losses = []
        for rank in range(world_size):
            items = [dm.train_set[i] for i in order[rank::world_size]]
            x = torch.stack([x for x, _ in items])
            y = torch.tensor([y for _, y in items])
            losses.append(torch.nn.functional.cross_entropy(model(x), y))
        (sum(losses) / world_size).backward()
        optimizer.step()
    return model.state_dict()


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    # 16 training images: one global batch of 2 x 8 per epoch, two epochs. The DDP run uses the
    # memory-saving backward; the one-process reference plain autograd on the same shards.
    ddp = _fit(
        tmp_path,
        "ddp",
        8,
        True,
        ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"],
    )
    (tmp_path / "reference.yaml").write_text(TINY.format(batch=8, saving="false"))
    reference = _emulate_ddp(tmp_path / "reference.yaml", world_size=2, steps=2)
    init = LitRevCLI(
        args=["--config", str(tmp_path / "reference.yaml")], run=False
    ).model.state_dict()
    moved = 0
    for name, param in reference.items():
        if "running" in name or "num_batches" in name:  # DDP keeps rank 0's statistics
            continue
        assert torch.allclose(ddp[name], param, rtol=1e-4, atol=1e-6), (
            f"{name}: max diff {(ddp[name] - param).abs().max().item()}"
        )
        moved += not torch.allclose(init[name], param, atol=1e-6)
    assert moved > 0, "two steps changed nothing: the comparison would be vacuous"

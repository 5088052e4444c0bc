"""lit_rev.callbacks.checkpoints: step and epoch saves, SIGTERM's exit code, safe writes."""

import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.callbacks import (
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    LastCheckpoint,
    UnreadableCheckpoint,
    sigterm_exits_nonzero,
)
from lit_rev.density import DensityModule
from tests.toy_densities import UniformDensity
from tests.trainers import quiet_trainer


def tiny_fit(tmp_path, callback, batches: int = 4, epochs: int = 2):
    """Fit a one-parameter density for ``epochs`` epochs of ``batches`` steps."""
    module = DensityModule(UniformDensity(), n_bits=8, num_samples=0, warmup_steps=1)
    images = torch.randint(0, 256, (batches * 2, 1, 2, 2))
    loader = DataLoader(TensorDataset(images, torch.zeros(len(images))), batch_size=2)
    trainer = quiet_trainer(
        tmp_path, enable_checkpointing=True, callbacks=[callback], max_epochs=epochs
    )
    trainer.fit(module, loader)
    return trainer


def test_an_epoch_ending_on_a_step_save_still_gets_its_epoch_checkpoint(tmp_path):
    """Every 2 steps, 4 steps an epoch: each epoch's last step is also a step save."""
    callback = LastCheckpoint(every_n_steps=2, dirpath=tmp_path / "checkpoints", save_top_k=-1)
    tiny_fit(tmp_path, callback)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 8


def test_sigterm_exits_143_not_0():
    """Lightning's SIGTERM stop is a SystemExit without a code (exit 0); here it is 143."""
    with pytest.raises(SystemExit) as stopped, sigterm_exits_nonzero():
        raise SIGTERMException()
    assert stopped.value.code == SIGTERM_EXIT_CODE == 143


def test_other_exits_pass_through_unchanged():
    with pytest.raises(SystemExit) as stopped, sigterm_exits_nonzero():
        raise SystemExit(2)
    assert stopped.value.code == 2
    with pytest.raises(ValueError, match="kept"), sigterm_exits_nonzero():
        raise ValueError("kept")


def cut_short(checkpoint, path):
    """A save on a full disk: half the bytes reach the file, then the write fails."""
    import io

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    raise OSError(28, "No space left on device")


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, path)
    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", cut_short)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left
    assert io.load_checkpoint(path)["global_step"] == 1


def test_an_unreadable_checkpoint_names_the_last_good_one(tmp_path):
    io = AtomicCheckpointIO()
    good = tmp_path / "epoch=0-step=4.ckpt"
    io.save_checkpoint({"global_step": 4}, good)
    (tmp_path / "on_exception.ckpt").write_bytes(b"")  # the 0-byte file of a full disk
    with pytest.raises(UnreadableCheckpoint, match=rf"resume with --ckpt_path {good}"):
        io.load_checkpoint(tmp_path / "on_exception.ckpt")
    truncated = tmp_path / "last.ckpt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(UnreadableCheckpoint, match=rf"{truncated} cannot be read .*{good}"):
        io.load_checkpoint(truncated)


def test_every_run_of_the_command_line_writes_checkpoints_safely(tmp_path):
    from lit_rev.cli import LitRevCLI
    from tests.test_cli import tiny_config

    cli = LitRevCLI(args=["--config", str(tiny_config(tmp_path))], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_resuming_from_an_unreadable_checkpoint_names_the_last_good_one(tmp_path):
    """``fit --ckpt_path`` of a cut-short file: the error names the readable one beside it."""
    callback = LastCheckpoint(every_n_steps=0, dirpath=tmp_path / "checkpoints")
    trainer = tiny_fit(tmp_path, callback, epochs=1)
    broken = tmp_path / "checkpoints" / "on_exception.ckpt"
    broken.write_bytes(b"")
    module = DensityModule(UniformDensity(), n_bits=8, num_samples=0)
    images = torch.randint(0, 256, (8, 1, 2, 2))
    loader = DataLoader(TensorDataset(images, torch.zeros(8)), batch_size=2)
    resumed = quiet_trainer(tmp_path, max_epochs=2, plugins=[AtomicCheckpointIO()])
    with pytest.raises(UnreadableCheckpoint, match="newest readable checkpoint there is"):
        resumed.fit(module, loader, ckpt_path=broken)
    assert trainer.global_step == 4

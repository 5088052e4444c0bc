"""lit_rev.callbacks.checkpoints: step and epoch saves, SIGTERM's exit code, safe writes."""

import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.callbacks import SIGTERM_EXIT_CODE, LastCheckpoint, sigterm_exits_nonzero
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

"""A run interrupted mid-epoch and resumed trains on exactly the batches, with exactly the
random draws, of the uninterrupted run, and ends with the same parameters; the uninterrupted
order is torch's ``shuffle=True`` order."""

import hashlib
import os
import signal

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, RandomSampler

from lit_rev.callbacks import FaultCheckpoint
from lit_rev.data import Digits, ImageDataModule
from lit_rev.data.resumable import ResumableRandomSampler, rng_states, set_rng_states
from tests.trainers import quiet_trainer

BATCHES_PER_EPOCH = 10
EPOCHS = 3


class Recorder(LightningModule):
    """Dropout and uniform noise (drawn from the global generator, like dequantisation) on
    top of a linear map; each step's batch and draws are digested."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(64, 1))
        self.digests = []

    def training_step(self, batch, batch_idx):
        x = batch[0].float().flatten(1)
        noise = torch.rand_like(x)
        out = self.net(x / 16 + noise)
        self.digests.append(
            hashlib.sha1(x.numpy().tobytes() + noise.numpy().tobytes()).hexdigest()[:12]
            + f"/{float(out.sum()):.6f}"
        )
        return out.mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SigtermAt(Callback):
    """A real SIGTERM right after step ``step``; Lightning stops at the end of that batch."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def data():
    # 8x8 digits, randomly flipped in the loader (the main process's generator): 10 batches
    return ImageDataModule(
        Digits(), batch_size=8, max_train=8 * BATCHES_PER_EPOCH + 5, augment="flip"
    )


def fit(tmp_path, callbacks=(), ckpt_path=None):
    seed_everything(0)
    module = Recorder()
    checkpoints = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_last=True)
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=EPOCHS,
        enable_checkpointing=True,
        callbacks=[checkpoints, FaultCheckpoint(), *callbacks],
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data(), ckpt_path=ckpt_path)
    return module, trainer


def parameters(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and one stopped by SIGTERM at step 13 (epoch 1, batch 3) whose
    every-4-steps ``last.ckpt`` is from step 12."""
    tmp_path = tmp_path_factory.mktemp("runs")
    whole, trainer = fit(tmp_path / "whole")
    assert trainer.global_step == EPOCHS * BATCHES_PER_EPOCH
    assert len(set(whole.digests)) == len(whole.digests)
    with pytest.raises(SystemExit):
        fit(tmp_path / "stopped", callbacks=[SigtermAt(13)])
    return whole, tmp_path / "stopped"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "step"), [("on_exception.ckpt", 13), ("last.ckpt", 12)])
def test_a_resumed_run_sees_the_batches_and_draws_of_an_uninterrupted_one(
    runs, tmp_path, name, step
):
    whole, stopped = runs
    path = stopped / name
    assert torch.load(path, weights_only=True)["global_step"] == step  # mid-epoch
    resumed, trainer = fit(tmp_path, ckpt_path=path)
    assert trainer.global_step == EPOCHS * BATCHES_PER_EPOCH
    assert resumed.digests == whole.digests[step:]
    assert torch.equal(parameters(resumed), parameters(whole))


@pytest.mark.slow
def test_an_uninterrupted_run_is_the_one_of_torchs_shuffle(runs, tmp_path, monkeypatch):
    """Through Lightning too: every batch and draw as with ``DataLoader(shuffle=True)``."""
    from lit_rev.data.base import BaseDataModule

    def torch_shuffle(self, dataset, batch_size, shuffle=False):
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle)

    monkeypatch.setattr(BaseDataModule, "_loader", torch_shuffle)
    reference, _ = fit(tmp_path)
    whole, _ = runs
    assert reference.digests == whole.digests
    assert torch.equal(parameters(reference), parameters(whole))


def test_the_uninterrupted_order_is_torchs_shuffle():
    """The same global generator gives the same batches as DataLoader(shuffle=True), epoch
    after epoch, and leaves the generator in the same state."""
    items = list(range(37))
    torch.manual_seed(3)
    torch_batches = [
        b.tolist() for _ in range(3) for b in DataLoader(items, batch_size=5, shuffle=True)
    ]
    after_torch = torch.rand(1)
    torch.manual_seed(3)
    sampler = ResumableRandomSampler(items, 5)
    ours = [b.tolist() for _ in range(3) for b in DataLoader(items, batch_size=5, sampler=sampler)]
    assert ours == torch_batches and torch.equal(torch.rand(1), after_torch)
    assert isinstance(sampler, RandomSampler)  # so Lightning still distributes it under DDP


def prefetched(loader):
    """The loader's batches, each read before the previous one is handed out (as Lightning)."""
    batches = iter(loader)
    ahead = next(batches, None)
    while ahead is not None:
        current, ahead = ahead, next(batches, None)
        yield current


def test_a_resumed_sampler_continues_the_epoch_and_the_draws():
    items = list(range(20))
    torch.manual_seed(0)
    sampler = ResumableRandomSampler(items, 4)
    loader = DataLoader(items, batch_size=4, sampler=sampler, drop_last=True)
    seen, draws = [], []
    for batch in prefetched(loader):  # draw after each batch, as a training step would
        seen.append(batch.tolist())
        draws.append(torch.rand(1).item())
        if len(seen) == 2:
            state = {
                "seed": sampler.seed,
                "batches_done": 2,
                "before_next": sampler.states_before[2],
                "at_save": rng_states(),
            }
    after = [b.tolist() for b in prefetched(loader)]
    # a fresh sampler, the generator elsewhere: resumes batch 2 on, then a new epoch as before
    torch.manual_seed(123)
    fresh = ResumableRandomSampler(items, 4)
    fresh.resume(**state)
    resumed_loader = DataLoader(items, batch_size=4, sampler=fresh, drop_last=True)
    resumed, resumed_draws = [], []
    for batch in prefetched(resumed_loader):
        resumed.append(batch.tolist())
        resumed_draws.append(torch.rand(1).item())
    assert resumed == seen[2:] and resumed_draws == draws[2:]
    assert [b.tolist() for b in prefetched(resumed_loader)] == after


def test_random_states_round_trip():
    import random

    import numpy as np

    states = rng_states()
    expected = (torch.rand(2), np.random.rand(2), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_states(states)
    got = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]

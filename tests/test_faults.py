"""Faults lose no work: a run stopped by SIGTERM, Ctrl+C or an exception leaves a checkpoint
that resumes it (step count and optimiser state), SIGTERM exits non-zero, and `last.ckpt` is
written every N steps, not only at epoch ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from lit_rev.callbacks import SIGTERM_EXIT_CODE
from lit_rev.cli import main
from tests.test_cli import tiny_config


class StopAt(Callback):
    """Stops ``fit`` right after optimiser step ``step``: a real SIGTERM or SIGINT sent to this
    process, or an exception raised from the training loop."""

    def __init__(self, step: int = 3, how: str = "sigterm"):
        self.step = step
        self.how = how

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        if self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning stops at the end of this batch
        elif self.how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt right here
        else:
            raise RuntimeError("injected fault")


def load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def adamax_steps(optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


@pytest.fixture
def restore_sigint():
    """Lightning ignores SIGINT for good after a KeyboardInterrupt; give pytest its Ctrl+C back."""
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, raised, code",
    [
        ("sigterm", SystemExit, SIGTERM_EXIT_CODE),
        ("sigint", SystemExit, 1),
        ("error", RuntimeError, None),
    ],
)
def test_a_stopped_fit_leaves_a_checkpoint_that_resumes_it(
    tmp_path, restore_sigint, how, raised, code
):
    stop_at = f"[{{class_path: tests.test_faults.StopAt, init_args: {{how: {how}}}}}]"
    stopping = tiny_config(
        tmp_path / "stop", callbacks=stop_at, **{"max_steps: 3": "max_steps: 50"}
    )
    with pytest.raises(raised) as stopped:
        main(["fit", "--config", str(stopping), "--checkpoint_every_n_steps=2"])
    if code is not None:
        # SIGTERM: 143, never 0 (a scheduler must see that the job did not finish)
        assert stopped.value.code == code
    checkpoints = tmp_path / "stop" / "logs" / "tiny" / "version_0" / "checkpoints"
    # the epoch (about 100 batches) never ended: last.ckpt comes from the every-2-steps save
    assert load(checkpoints / "last.ckpt")["global_step"] == 2
    fault = checkpoints / "on_exception.ckpt"
    assert load(fault)["global_step"] == 3

    resumed = main(
        [
            "fit",
            "--config",
            str(tiny_config(tmp_path / "resume")),
            "--trainer.max_steps=5",
            f"--ckpt_path={fault}",
        ]
    )
    assert resumed.trainer.global_step == 5
    assert adamax_steps(resumed.trainer.optimizers[0]) == {5}  # moments continued, not restarted


@pytest.mark.slow
def test_sigterm_to_a_cli_process_exits_nonzero_and_its_checkpoint_resumes(tmp_path):
    """End to end: ``python -m lit_rev fit`` in its own process, a real SIGTERM mid-training
    (as SLURM preemption or ``docker stop`` send), then ``--ckpt_path`` resumes the state."""
    config = tiny_config(tmp_path / "run", **{"max_steps: 3": "max_steps: 100000"})
    checkpoints = tmp_path / "run" / "logs" / "tiny" / "version_0" / "checkpoints"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lit_rev",
            "fit",
            "--config",
            str(config),
            "--torch_threads=1",
            "--checkpoint_every_n_steps=2",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while not (checkpoints / "last.ckpt").exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.time() < deadline, "no last.ckpt within 180 s"
            time.sleep(0.2)
        time.sleep(0.5)  # mid-training, past a checkpoint step
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == SIGTERM_EXIT_CODE, err[-3000:]
    fault = checkpoints / "on_exception.ckpt"
    assert f"--ckpt_path {fault}" in err
    stopped = load(fault)
    step = stopped["global_step"]
    assert step >= load(checkpoints / "last.ckpt")["global_step"] >= 2

    resumed = main(
        [
            "fit",
            "--config",
            str(tiny_config(tmp_path / "resume")),
            f"--trainer.max_steps={step + 2}",
            f"--ckpt_path={fault}",
        ]
    )
    assert resumed.trainer.global_step == step + 2
    assert adamax_steps(resumed.trainer.optimizers[0]) == {step + 2}

"""DDP test helpers: a callback the CLI loads by class path (the repository root is put on
PYTHONPATH so that ``tests.ddp_helpers`` imports) and a runner that fits a config on two gloo
CPU processes."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

REPO = Path(__file__).resolve().parents[1]


class DumpParameters(Callback):
    """Saves every rank's state dict to ``$DUMP_DIR/rank<r>.pt`` when training ends."""

    def on_train_end(self, trainer, pl_module):
        path = os.path.join(os.environ["DUMP_DIR"], f"rank{trainer.global_rank}.pt")
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, path)


def fit_on_two_ranks(cli_args: list[str], workdir: Path) -> tuple[dict, dict]:
    """``python -m lit_rev fit <cli_args>`` on 2 CPU processes (DDP, gloo) with
    :class:`DumpParameters` as the only callback; returns both ranks' final state dicts."""
    dump = workdir / "dump_parameters.yaml"
    dump.write_text("trainer:\n  callbacks: [{class_path: tests.ddp_helpers.DumpParameters}]\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "DUMP_DIR": str(workdir),
    }
    cmd = [
        sys.executable,
        "-m",
        "lit_rev",
        "fit",
        *cli_args,
        "--config",
        str(dump),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tuple(torch.load(workdir / f"rank{r}.pt") for r in (0, 1))


def assert_identical_parameters(rank0: dict, rank1: dict) -> None:
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

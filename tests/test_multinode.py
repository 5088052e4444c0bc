"""Multi-node DDP through the CLI: two node ranks of one process each, launched on this machine
as a cluster would launch them on two (gloo over 127.0.0.1): first with Lightning's own
environment variables (MASTER_ADDR, MASTER_PORT, NODE_RANK), then resumed under torchrun.
Both ranks end with the same parameters, rank 0 alone writes the logs and checkpoints, and
the resumed run continues from the checkpoint. docs/scaling.md gives the real commands."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_helpers import REPO

CONFIGS = REPO / "configs"

# the environment variables of other launchers, which would make Lightning pick another
# cluster environment than the one a test means
LAUNCHER_VARIABLES = ("SLURM_", "TORCHELASTIC_", "GROUP_RANK", "LOCAL_RANK", "RANK", "WORLD_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environment(workdir: Path, dump: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(LAUNCHER_VARIABLES) and k not in ("MASTER_ADDR", "MASTER_PORT")
    }
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        DUMP_DIR=str(workdir / dump),
    )
    (workdir / dump).mkdir(parents=True, exist_ok=True)
    return env


def fit_on_two_nodes(cli_args: list[str], workdir: Path, launcher: str, dump: str):
    """``python -m lit_rev fit`` as node ranks 0 and 1 (one process each), both in ``workdir``
    (a filesystem the nodes share, as on most clusters); returns both ranks' final parameters.

    ``launcher``: ``lightning`` (the variables Lightning reads: MASTER_ADDR, MASTER_PORT,
    NODE_RANK) or ``torchrun`` (``--nnodes 2 --node_rank r --nproc_per_node 1``).
    """
    (workdir / "dump_parameters.yaml").write_text(
        "trainer:\n  callbacks: [{class_path: tests.ddp_helpers.DumpParameters}]\n"
    )
    fit = [
        "fit",
        *cli_args,
        "--config",
        "dump_parameters.yaml",
        "--trainer.accelerator=cpu",
        "--trainer.num_nodes=2",
        "--trainer.devices=1",
        "--trainer.strategy=ddp",
        "--torch_threads=1",
    ]
    port = free_port()
    processes = []
    for node_rank in (0, 1):
        env = clean_environment(workdir, dump)
        if launcher == "lightning":
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NODE_RANK=str(node_rank))
            command = [sys.executable, "-m", "lit_rev", *fit]
        else:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node_rank={node_rank}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "-m",
                "lit_rev",
                *fit,
            ]
        log = open(workdir / f"{dump}-node{node_rank}.log", "w")  # noqa: SIM115 (closed below)
        processes.append(
            (subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log), log)
        )
    for process, log in processes:
        try:
            process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    for node_rank, (process, _) in enumerate(processes):
        text = (workdir / f"{dump}-node{node_rank}.log").read_text()
        assert process.returncode == 0, f"node {node_rank}:\n{text[-3000:]}"
    return tuple(torch.load(workdir / dump / f"rank{r}.pt") for r in (0, 1))


def assert_identical_parameters(rank0: dict, rank1: dict) -> None:
    """Every parameter and buffer equal, except batch-norm running statistics: DDP broadcasts
    rank 0's buffers before each forward pass, and each rank then updates them on its own
    batch (``--trainer.sync_batchnorm=true`` would share them)."""
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        if not key.endswith(("running_mean", "running_var")):
            assert torch.equal(rank0[key], rank1[key]), key


CASES = {
    "glow": (
        CONFIGS / "density" / "quick_glow_mnist5k.yaml",
        "quick_glow_mnist5k",
        ["--model.init_args.warmup_steps=1"],
    ),
    "revnet": (CONFIGS / "revnet" / "quick_revnet38_mnist5k.yaml", "lit_rev", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(CASES))
def test_two_nodes_train_alike_write_once_and_resume(model, tmp_path):
    config, name, extra = CASES[model]
    tiny = [
        "--config",
        str(config),
        "--data.init_args.batch_size=4",
        "--data.init_args.test_batch_size=4",
        "--data.init_args.max_train=64",
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
        "--checkpoint_every_n_steps=1",
        *extra,
    ]
    rank0, rank1 = fit_on_two_nodes(
        [*tiny, "--trainer.max_steps=2"], tmp_path, launcher="lightning", dump="first"
    )
    assert_identical_parameters(rank0, rank1)

    # one set of logs and checkpoints: rank 0's, in one version directory
    runs = tmp_path / "logs" / name
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"]
    assert len(list(runs.glob("version_0/events.out.tfevents.*"))) == 1
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["first", "logs"]

    resumed0, resumed1 = fit_on_two_nodes(
        # the first run ended its epoch when it stopped (max_steps): a second epoch trains on
        [*tiny, "--trainer.max_steps=3", "--trainer.max_epochs=2", f"--ckpt_path={last}"],
        tmp_path,
        launcher="torchrun",
        dump="resumed",
    )
    assert_identical_parameters(resumed0, resumed1)
    assert any(not torch.equal(resumed0[k], rank0[k]) for k in rank0)  # it trained on
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    resumed_last = runs / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.load(resumed_last, weights_only=True)["global_step"] == 3

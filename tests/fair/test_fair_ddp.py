"""Two gloo processes through the CLI: the fairness models end with the same parameters on
both ranks. GRAD's extra adversary steps average their gradients by hand and LFR seeds its
prototypes from data on each rank, so a missing reduce or broadcast shows up here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config, epochs", [("grad_pred_german.yaml", 2), ("lfr_german.yaml", 3)])
def test_two_ranks_end_with_identical_parameters(config, epochs, tmp_path):
    extra = tmp_path / "dump.yaml"
    extra.write_text("trainer:\n  callbacks: [{class_path: ddp_helpers.DumpParameters}]\n")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "DUMP_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "lit_rev", "fit", "--config", str(REPO / "configs" / "fair" / config), "--config", str(extra),
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", f"--trainer.max_epochs={epochs}",
           "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.check_val_every_n_epoch=1",
           "--model.init_args.probes=[]", "--torch_threads=1"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    first = next(k for k in rank0 if k.endswith("weight") or k == "prototypes")
    assert rank0[first].abs().sum() > 0

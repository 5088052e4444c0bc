"""Two gloo processes through the CLI: the fairness models end with the same parameters on
both ranks. GRAD's extra adversary steps average their gradients by hand and LFR seeds its
prototypes from data on each rank, so a missing reduce or broadcast shows up here."""

from pathlib import Path

import pytest

from tests.ddp_helpers import assert_identical_parameters, fit_on_two_ranks

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "fair"


@pytest.mark.slow
@pytest.mark.parametrize("config, epochs", [("grad_pred_german.yaml", 2), ("lfr_german.yaml", 3)])
def test_two_ranks_end_with_identical_parameters(config, epochs, tmp_path):
    rank0, rank1 = fit_on_two_ranks(
        [
            "--config",
            str(CONFIGS / config),
            f"--trainer.max_epochs={epochs}",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.check_val_every_n_epoch=1",
            "--model.init_args.probes=[]",
            "--torch_threads=1",
        ],
        tmp_path,
    )
    assert_identical_parameters(rank0, rank1)
    first = next(k for k in rank0 if k.endswith("weight") or k == "prototypes")
    assert rank0[first].abs().sum() > 0

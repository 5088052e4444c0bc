"""The multi-seed results command, on German with a one-epoch budget."""

import csv
from pathlib import Path

import pytest

from lit_rev.fair.results import main

CONFIGS = Path(__file__).parents[2] / "configs" / "fair"


@pytest.mark.slow
def test_results_command_writes_mean_and_std_tables_and_chains_grad_auto(tmp_path):
    chain = f"{CONFIGS / 'grad_auto_german.yaml'}+{CONFIGS / 'grad_auto_german_classifier.yaml'}"
    summary = main(["--config", str(CONFIGS / "vanilla_german.yaml"), chain, "--seeds", "2", "--out", str(tmp_path),
                    "--name", "german", "--trainer.max_epochs=2"])
    assert [r["config"] for r in summary] == ["vanilla_german", "grad_auto_german_classifier"]
    for key in ("accuracy", "discrimination", "consistency", "delta", "probe_logistic_acc_age"):
        assert "±" in summary[0][key]
    table = (tmp_path / "german.md").read_text()
    assert "| config |" in table and "vanilla_german" in table
    with open(tmp_path / "german_numeric.csv") as f:
        numeric = list(csv.DictReader(f))
    assert float(numeric[0]["accuracy_std"]) >= 0.0 and 0.5 < float(numeric[0]["accuracy_mean"]) <= 1.0
    with open(tmp_path / "german_seeds.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    # the second stage read the first stage's checkpoint
    assert (tmp_path / "logs" / "grad_auto_german" / "seed_1" / "final.ckpt").is_file()

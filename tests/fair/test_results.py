"""The multi-seed results command (lit_rev.commands.fair_results), on German with a one-epoch
budget, and the tables of lit_rev.fair.results."""

import csv
from pathlib import Path

import pytest

from lit_rev.commands.fair_results import main

CONFIGS = Path(__file__).parents[2] / "configs" / "fair"


@pytest.mark.slow
def test_results_command_writes_mean_and_std_tables_and_chains_grad_auto(tmp_path):
    chain = f"{CONFIGS / 'grad_auto_german.yaml'}+{CONFIGS / 'grad_auto_german_classifier.yaml'}"
    summary = main(
        [
            "--config",
            str(CONFIGS / "vanilla_german.yaml"),
            chain,
            "--seeds",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "german",
            "--trainer.max_epochs=2",
        ]
    )
    assert [r["config"] for r in summary] == ["vanilla_german", "grad_auto_german_classifier"]
    for key in ("accuracy", "discrimination", "consistency", "delta", "probe_logistic_acc_age"):
        assert "±" in summary[0][key]
    table = (tmp_path / "german.md").read_text()
    assert "| config |" in table and "vanilla_german" in table
    with open(tmp_path / "german_numeric.csv") as f:
        numeric = list(csv.DictReader(f))
    assert (
        float(numeric[0]["accuracy_std"]) >= 0.0 and 0.5 < float(numeric[0]["accuracy_mean"]) <= 1.0
    )
    with open(tmp_path / "german_seeds.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    # the second stage read the first stage's checkpoint
    assert (tmp_path / "logs" / "grad_auto_german" / "seed_1" / "final.ckpt").is_file()


def test_every_config_the_module_names_exists():
    import re

    import lit_rev.commands.fair_results as results

    named = re.findall(r"configs/fair/[\w]+\.yaml", results.__doc__)
    assert named, "the usage examples name configs"
    for path in named:
        assert (CONFIGS.parents[1] / path).is_file(), path


def test_one_seed_has_no_std_and_a_missing_seed_is_counted():
    import math

    import numpy as np

    from lit_rev.fair.results import summarise

    row, numeric = summarise("one", [{"accuracy": 0.85}])
    assert row["accuracy"] == "0.850 ± n/a" and math.isnan(numeric["accuracy_std"])
    values = [0.80, 0.83, 0.90]
    row, numeric = summarise("three", [{"accuracy": v} for v in values])
    assert numeric["accuracy_std"] == pytest.approx(float(np.std(values, ddof=1)))
    assert row["accuracy"] == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    row, _ = summarise("gap", [{"accuracy": 0.8}, {"accuracy": float("nan")}])
    assert row["accuracy"] == "0.800 ± n/a (1 of 2 seeds)"


def test_a_bad_config_stops_the_command_before_any_run(tmp_path, monkeypatch, capsys):
    import lit_rev.commands.fair_results as results

    ran = []
    monkeypatch.setattr(results, "run_once", lambda *args: ran.append(args) or {"accuracy": 0.5})
    bad = tmp_path / "typo.yaml"
    bad.write_text((CONFIGS / "vanilla_german.yaml").read_text().replace("lambda_:", "lambda:"))
    chain = f"{CONFIGS / 'grad_auto_german.yaml'}+{CONFIGS / 'grad_auto_german_classifier.yaml'}"
    with pytest.raises(SystemExit) as stop:
        results.main(
            [
                "--config",
                str(CONFIGS / "vanilla_german.yaml"),
                chain,
                str(bad),
                "--seeds",
                "1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert "typo.yaml" in str(stop.value.code) and "nothing was run" in str(stop.value.code)
    assert "lambda" in capsys.readouterr().err  # the parser named the key
    assert ran == [] and not (tmp_path / "out" / "vanilla_german.md").exists()

    missing = str(tmp_path / "grad_auto_german_stage2.yaml")
    with pytest.raises(SystemExit, match=r"grad_auto_german_stage2\.yaml does not exist"):
        results.main(
            [
                "--config",
                f"{CONFIGS / 'grad_auto_german.yaml'}+{missing}",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert ran == []

    # the good ones pass the check (a chain's second stage without its encoder checkpoint yet)
    results.main(
        [
            "--config",
            str(CONFIGS / "vanilla_german.yaml"),
            chain,
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert len(ran) == 2 and (tmp_path / "out" / "vanilla_german.md").exists()

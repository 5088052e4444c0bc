"""The fair configs: one per model and data set; a few report every metric after a smoke run.

tests/test_configs.py already smoke-runs every YAML (fair ones included) with fit and test;
here a representative few are checked for the metrics their test run reports.
"""

from pathlib import Path

import pytest
import yaml

from lit_rev.cli import LitRevCLI

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "fair").glob("*.yaml"))


def test_there_is_a_config_per_model_and_data_set():
    names = {c.stem for c in CONFIGS}
    models = (
        "grad_pred",
        "grad_auto",
        "grad_auto_{}_classifier",
        "vanilla",
        "alfr",
        "lfr",
        "vfa",
        "eg_logistic",
        "eg_mlp",
        "thresholdopt_logistic",
        "thresholdopt_mlp",
    )
    for model in models:
        for data in ("adult", "german", "compas"):
            name = model.format(data) if "{}" in model else f"{model}_{data}"
            assert name in names
    assert "grad_pred_adult_sex_race" in names
    assert {"aif360_vanilla_adult", "aif360_grad_pred_adult"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_configs_name_the_data_modules_by_their_current_names(config):
    data = yaml.safe_load(config.read_text())["data"]["class_path"]
    expected = {
        "adult": "AdultDataModule",
        "german": "GermanDataModule",
        "compas": "COMPASDataModule",
    }
    (dataset,) = set(config.stem.split("_")) & set(expected)
    assert data == expected[dataset]


REPORTING = [c for c in CONFIGS if c.stem in ("grad_pred_adult", "alfr_adult", "lfr_german")]


@pytest.mark.parametrize("config", REPORTING, ids=[c.stem for c in REPORTING])
def test_config_smoke_runs_fit_and_test(config, tmp_path):
    args = [
        "--config",
        str(config),
        "--trainer.fast_dev_run=2",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_model_summary=false",
    ]
    cli = LitRevCLI(args=["fit", *args])
    assert cli.trainer.state.finished
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    results = cli.model.test_results
    assert 0.0 <= results["accuracy"] <= 1.0 and 0.0 <= results["consistency"] <= 1.0
    assert any(k.startswith("probe_logistic_acc_") for k in results)

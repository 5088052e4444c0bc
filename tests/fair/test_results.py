"""The multi-seed results command (lit_rev.commands.fair_results), on German with a one-epoch
budget, and the tables of lit_rev.fair.results."""

import csv
import math
from pathlib import Path

import pytest

from lit_rev.commands.fair_results import main
from lit_rev.evaluation.fair_runs import RunResult

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
            # a rate that learns in 2 epochs: a collapsed seed's cells would read "collapsed"
            "--model.init_args.lr=0.01",
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
    monkeypatch.setattr(
        results, "run_full", lambda *args: ran.append(args) or RunResult({"accuracy": 0.5})
    )
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


def test_a_collapsed_seed_is_flagged_and_left_out_of_the_fairness_cells():
    from lit_rev.fair.results import collapse_status, summarise

    fair = {"accuracy": 0.83, "positive_rate": 0.17, "discrimination": 0.03, "probe_acc": 0.7}
    constant = {"accuracy": 0.75, "positive_rate": 0.0, "discrimination": 0.0, "probe_acc": 0.6}
    assert collapse_status(fair) == "ok" and "COLLAPSED" in collapse_status(constant)
    assert "COLLAPSED" in collapse_status({**fair, "positive_rate": 1.0})
    row, numeric = summarise("grad", [fair, constant, {**fair, "discrimination": 0.05}])
    assert row["collapsed"] == "1 of 3" and numeric["collapsed"] == 1
    # discrimination 0 of the constant predictor is not averaged in
    assert row["discrimination"].startswith("0.040 ± 0.014 (2 of 3 seeds; 1 collapsed)")
    assert numeric["discrimination_mean"] == pytest.approx(0.04)
    # accuracy, positive rate and the probe keep every seed
    assert row["accuracy"].startswith(f"{(0.83 * 2 + 0.75) / 3:.3f} ±")
    assert "seeds" not in row["probe_acc"]
    row, _ = summarise("dead", [constant, constant])
    assert row["discrimination"] == "collapsed (2 of 2 seeds)" and row["collapsed"] == "2 of 2"


def test_the_interval_of_the_mean_over_seeds_comes_from_the_replicates():
    import numpy as np

    from lit_rev.fair.results import headline, headline_replicates, summarise

    rng = np.random.default_rng(0)
    reps = [rng.normal(0.8, 0.01, 1000), rng.normal(0.9, 0.01, 1000)]
    runs = [{"accuracy": 0.8, "positive_rate": 0.2}, {"accuracy": 0.9, "positive_rate": 0.2}]
    row, numeric = summarise("two", runs, [{"accuracy": r} for r in reps])
    want = np.percentile((reps[0] + reps[1]) / 2, [2.5, 97.5])
    assert numeric["accuracy_ci_low"] == pytest.approx(want[0])
    assert numeric["accuracy_ci_high"] == pytest.approx(want[1])
    assert row["accuracy"].startswith(f"0.850 ± 0.071 [{want[0]:.3f}, {want[1]:.3f}] rows [")
    assert row["accuracy"].endswith("] seeds+rows")
    # a single run without replicates shows its own interval; the headline copies the first
    # attribute's interval
    one = headline(
        {
            "accuracy": 0.8,
            "accuracy_ci_low": 0.78,
            "accuracy_ci_high": 0.82,
            "discrimination_sex": 0.1,
            "discrimination_sex_ci_low": 0.08,
            "discrimination_sex_ci_high": 0.12,
            "delta_sex": 0.7,
        }
    )
    assert one["discrimination_ci_low"] == 0.08 and one["discrimination_ci_high"] == 0.12
    row, _ = summarise("one", [one])
    assert row["accuracy"] == "0.800 ± n/a [0.780, 0.820] rows"
    assert row["discrimination"] == "0.100 ± n/a [0.080, 0.120] rows"
    copied = headline_replicates({"discrimination_sex": reps[0]}, one)
    assert copied["discrimination"] is reps[0]


def test_a_test_run_reports_groups_intervals_and_collapse(tmp_path):
    """A short German fit: the module's per-group table agrees with fairlearn on its own
    predictions, every headline metric has an interval around it, and the table files and
    TensorBoard get the groups."""
    import numpy as np
    from fairlearn import metrics as fl
    from lightning.pytorch import seed_everything

    from lit_rev.data import GermanDataModule
    from lit_rev.fair import GRADModule
    from lit_rev.fair.metrics import GroupRates
    from tests.trainers import quiet_trainer

    seed_everything(0)
    data = GermanDataModule(protected=["age", "sex"], batch_size=64)
    model = GRADModule(lambda_=0.0, lr=0.01, bootstrap_resamples=200)
    trainer = quiet_trainer(tmp_path, max_epochs=4, logger=True)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    results, groups = model.test_results, model.test_groups
    assert [(g["attribute"], g["group"]) for g in groups] == [
        ("age", "<=25"),
        ("age", ">25"),
        ("sex", "male"),
        ("sex", "female"),
    ]
    rows = trainer.predict(model, dataloaders=data.test_dataloader())
    hard = np.concatenate([r["prob"][:, 1].numpy() >= 0.5 for r in rows]).astype(int)
    label = np.concatenate([r["label"].numpy() for r in rows])
    for attribute in ("age", "sex"):
        codes = np.concatenate([r[f"protected_{attribute}"].numpy() for r in rows])
        frame = fl.MetricFrame(
            metrics={
                "n": fl.count,
                "positive_rate": fl.selection_rate,
                "tpr": fl.true_positive_rate,
            },
            y_true=label,
            y_pred=hard,
            sensitive_features=codes,
        )
        ours = [g for g in groups if g["attribute"] == attribute]
        for column in ("n", "positive_rate", "tpr"):
            assert [g[column] for g in ours] == pytest.approx(
                list(frame.by_group[column]), abs=1e-6
            ), (attribute, column)
        assert results[f"dp_diff_{attribute}"] == pytest.approx(
            fl.demographic_parity_difference(label, hard, sensitive_features=codes), abs=1e-6
        )
    assert sum(g["n"] for g in groups if g["attribute"] == "age") == len(data.test_set)
    for key in ("accuracy", "consistency", "discrimination_age", "delta_age", "di_ratio_sex"):
        if math.isfinite(results[key]):
            assert results[f"{key}_ci_low"] <= results[key] <= results[f"{key}_ci_high"], key
    assert results["collapsed"] == float(results["positive_rate"] in (0.0, 1.0))
    log_dir = Path(trainer.logger.log_dir)
    table = (log_dir / "fair_groups.md").read_text()
    assert "| attribute | group | " + " | ".join(GroupRates.COLUMNS) + " |" in table
    assert "status" in (log_dir / "fair_results.md").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0}).Reload()
    tags = events.Tags()
    assert "test_groups/age/>25/tpr" in tags["scalars"]
    assert any("test/groups" in t for t in tags["tensors"])


def test_a_zero_resample_setting_turns_the_intervals_off_and_a_negative_one_is_refused():
    from lit_rev.fair import GRADModule

    with pytest.raises(ValueError, match="bootstrap_resamples must be >= 0"):
        GRADModule(bootstrap_resamples=-1)


def _fake_runs(monkeypatch):
    """run_full replaced by a recorder: every run tests at accuracy 0.8 with one group row."""
    import lit_rev.commands.fair_results as results

    ran = []

    def run(configs, seed, extra, log_root):
        ran.append((configs, seed, log_root))
        group = {"attribute": "age", "group": "old", "n": 10, "base_rate": 0.5}
        group.update(positive_rate=0.5, accuracy=0.8, tpr=0.8, fpr=0.2)
        return RunResult({"accuracy": 0.8, "positive_rate": 0.2}, [group])

    monkeypatch.setattr(results, "run_full", run)
    return ran


def test_two_configs_of_one_file_name_get_their_own_labels_and_logs(tmp_path, monkeypatch):
    import json

    ran = _fake_runs(monkeypatch)
    configs = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        configs.append(tmp_path / folder / "vanilla_german.yaml")
        configs[-1].write_text((CONFIGS / "vanilla_german.yaml").read_text())
    out = tmp_path / "out"
    configs.append(CONFIGS / "grad_pred_german.yaml")
    summary = main(["--config", *map(str, configs), "--seeds", "1", "--out", str(out)])
    labels = [r["config"] for r in summary]
    assert labels == ["a/vanilla_german", "b/vanilla_german", "grad_pred_german"]
    assert len({log_root for _, _, log_root in ran}) == 3  # a log directory each
    assert ran[2][2] == out / "logs"  # a config without a namesake logs where it did
    groups = json.loads((out / "vanilla_german_groups.json").read_text())["rows"]
    assert {r["config"]: r["seeds"] for r in groups if "seed" not in r} == dict.fromkeys(labels, 1)
    with pytest.raises(SystemExit) as stop:  # the same config twice is refused
        main(["--config", str(configs[0]), str(configs[0]), "--out", str(out)])
    assert stop.value.code == 2 and len(ran) == 3


def test_no_seeds_is_refused_and_leaves_the_results_as_they_were(tmp_path, monkeypatch, capsys):
    ran = _fake_runs(monkeypatch)
    out = tmp_path / "out"
    config = str(CONFIGS / "vanilla_german.yaml")
    main(["--config", config, "--seeds", "1", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for seeds in ("0", "-1"):
        with pytest.raises(SystemExit) as stop:
            main(["--config", config, "--seeds", seeds, "--out", str(out)])
        assert (
            stop.value.code == 2 and f"--seeds {seeds}: give at least 1" in capsys.readouterr().err
        )
    assert len(ran) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_crash_while_writing_leaves_the_earlier_results_whole(tmp_path, monkeypatch):
    import lit_rev.report as report

    _fake_runs(monkeypatch)
    out = tmp_path / "out"
    config = str(CONFIGS / "vanilla_german.yaml")
    main(["--config", config, "--seeds", "1", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def disk_full(rows, digits=3, markdown=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "format_table", disk_full)
    with pytest.raises(OSError, match="No space left"):
        main(["--config", config, "--seeds", "2", "--out", str(out)])
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after["vanilla_german_seeds.md"] == before["vanilla_german_seeds.md"]
    assert after.keys() == before.keys()  # no temporary file left behind

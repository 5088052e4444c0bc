"""The validation-split search (lit_rev.commands.fair_search) and fair_results' --chosen rows."""

import json
from pathlib import Path

import pytest

import lit_rev.commands.fair_results as fair_results
import lit_rev.commands.fair_search as fair_search
from lit_rev.commands.fair_search import choose, grid_points, parse_grid
from lit_rev.evaluation.fair_runs import RunResult

CONFIGS = Path(__file__).parents[2] / "configs" / "fair"
GERMAN = str(CONFIGS / "grad_pred_german.yaml")


def test_the_grid_is_the_product_of_its_value_lists_in_order():
    grid = parse_grid(["model.init_args.lambda_=1,3", "--model.init_args.hidden=[64,64]|[32]"])
    assert grid == [
        ("model.init_args.lambda_", ["1", "3"]),
        ("model.init_args.hidden", ["[64,64]", "[32]"]),
    ]
    assert grid_points(grid) == [
        ["--model.init_args.lambda_=1", "--model.init_args.hidden=[64,64]"],
        ["--model.init_args.lambda_=1", "--model.init_args.hidden=[32]"],
        ["--model.init_args.lambda_=3", "--model.init_args.hidden=[64,64]"],
        ["--model.init_args.lambda_=3", "--model.init_args.hidden=[32]"],
    ]
    for bad in ("model.init_args.lambda_", "=1,2", "model.init_args.lambda_=1,,2"):
        with pytest.raises(SystemExit, match="key=value1,value2"):
            parse_grid([bad])
    with pytest.raises(SystemExit, match="given twice"):
        parse_grid(["a=1", "a=2"])


def _candidate(accuracy, discrimination, collapsed=False):
    return {"accuracy": accuracy, "discrimination": discrimination, "collapsed": collapsed}


def test_the_rule_takes_the_most_accurate_point_under_the_bound_and_never_a_collapsed_one():
    candidates = [
        _candidate(0.85, 0.18),  # accurate but over the bound
        _candidate(0.83, 0.030),
        _candidate(0.84, 0.035),  # the most accurate under 0.036
        _candidate(0.90, 0.0, collapsed=True),  # a constant predictor is never chosen
        _candidate(0.84, 0.020),  # ties with 2 on accuracy: the first listed wins
    ]
    assert choose(candidates, "accuracy", 0.036) == (2, True)
    # nothing under the bound: the least discriminating live point, flagged
    assert choose(candidates, "accuracy", 0.01) == (4, False)
    # delta = accuracy - discrimination: 0.67, 0.80, 0.805, -, 0.82
    assert choose(candidates, "delta", None) == (4, True)
    with pytest.raises(SystemExit, match="every grid point collapsed"):
        choose([_candidate(0.8, 0.0, True)], "accuracy", 0.05)


def _fake_fit(calls):
    """A stand-in for fit_chain: validation numbers from lambda_ (and the seed), no training."""

    def fit(configs, seed, extra, log_root, then):
        calls.append((configs, seed, list(extra)))
        lam = float(next(a.split("=")[1] for a in extra if "lambda_" in a))
        assert then is fair_search.validate  # the search validates; it never tests
        return {
            "val/accuracy": 0.85 - 0.01 * lam + 0.001 * (seed - 100),
            "val/discrimination_age": 0.2 / (1 + lam),
            "val/positive_rate": 0.0 if lam > 9 else 0.3,
        }

    return fit


def test_the_search_writes_every_point_and_the_chosen_overrides(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(fair_search, "fit_chain", _fake_fit(calls))
    chosen = fair_search.main(
        [
            "--config",
            GERMAN,
            "--grid",
            "model.init_args.lambda_=1,3,6,10",
            "--max_discrimination",
            "0.05",
            "--seeds",
            "100",
            "101",
            "--out",
            str(tmp_path),
            "--trainer.max_epochs=2",
        ]
    )
    # 0.2/(1+λ): 0.1, 0.05, 0.029, 0.018; λ=10 collapsed: λ=3 is the most accurate under 0.05
    assert chosen["grid_point"] == ["--model.init_args.lambda_=3"]
    assert chosen["overrides"] == ["--trainer.max_epochs=2", "--model.init_args.lambda_=3"]
    assert chosen["search_seeds"] == [100, 101] and chosen["met_bound"] is True
    assert chosen["attribute"] == "age" and "<= 0.05" in chosen["rule"]
    assert chosen["validation"]["accuracy"] == pytest.approx(0.85 - 0.03 + 0.0005)
    assert sorted((c[1], c[2][-1]) for c in calls) == sorted(
        (seed, f"--model.init_args.lambda_={lam}") for seed in (100, 101) for lam in (1, 3, 6, 10)
    )
    assert json.loads((tmp_path / "grad_pred_german_chosen.json").read_text()) == chosen
    rows = json.loads((tmp_path / "grad_pred_german_search.json").read_text())["rows"]
    assert [r["chosen"] for r in rows] == [False, True, False, False]
    assert [r["eligible"] for r in rows] == [False, True, True, False]
    assert rows[3]["collapsed"] is True and "val_accuracy_seed_101" in rows[0]
    assert "chosen: --model.init_args.lambda_=3" in capsys.readouterr().out


def test_a_bad_grid_value_stops_the_search_before_any_fit(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(fair_search, "fit_chain", _fake_fit(calls))
    with pytest.raises(SystemExit, match="does not parse"):
        fair_search.main(
            [
                "--config",
                GERMAN,
                "--grid",
                "model.init_args.lambda_=1,oops",
                "--rule",
                "delta",
                "--out",
                str(tmp_path),
            ]
        )
    assert calls == [] and "lambda_" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the accuracy rule needs its bound
        fair_search.main(["--config", GERMAN, "--grid", "model.init_args.lambda_=1"])


def _chosen_file(tmp_path, seeds):
    path = tmp_path / "grad_pred_german_chosen.json"
    path.write_text(
        json.dumps(
            {
                "config": GERMAN,
                "overrides": ["--model.init_args.lambda_=3"],
                "search_seeds": seeds,
                "rule": "test",
            }
        )
    )
    return str(path)


def test_fair_results_reports_a_chosen_setting_on_unseen_seeds_only(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(
        fair_results,
        "run_full",
        lambda configs, seed, extra, log_root: (
            ran.append((configs, seed, extra, log_root))
            or RunResult({"accuracy": 0.8, "positive_rate": 0.2})
        ),
    )
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit, match=r"search used seeds \[1\].*--seed_start 101"):
        fair_results.main(["--chosen", _chosen_file(tmp_path, [1, 100]), "--out", out])
    assert ran == []
    summary = fair_results.main(
        [
            "--config",
            str(CONFIGS / "vanilla_german.yaml"),
            "--chosen",
            _chosen_file(tmp_path, [100, 101]),
            "--seeds",
            "2",
            "--out",
            out,
            "--trainer.max_epochs=1",
        ]
    )
    assert [r["config"] for r in summary] == ["vanilla_german", "grad_pred_german, tuned"]
    assert summary[1]["tuned"] == "--model.init_args.lambda_=3"
    tuned = [r for r in ran if r[0] == [GERMAN]]
    # the chosen overrides come after the command's own extra arguments, on seeds 0 and 1
    assert [(r[1], r[2]) for r in tuned] == [
        (seed, ["--trainer.max_epochs=1", "--model.init_args.lambda_=3"]) for seed in (0, 1)
    ]
    assert tuned[0][3] != ran[0][3]  # their own log directory
    ran.clear()
    fair_results.main(
        ["--chosen", _chosen_file(tmp_path, [0]), "--seeds", "1", "--seed_start", "5", "--out", out]
    )
    assert [r[1] for r in ran] == [5]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="lacks"):
        fair_results.main(["--chosen", str(bad), "--out", out])


@pytest.mark.slow
def test_search_then_report_end_to_end_on_german(tmp_path, monkeypatch):
    """Two grid points, one search seed, ten epochs; the search never calls Trainer.test."""
    from lightning.pytorch import Trainer

    def no_test(*args, **kwargs):
        raise AssertionError("the search read the test split")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "test", no_test)
        chosen = fair_search.main(
            [
                "--config",
                GERMAN,
                "--grid",
                "model.init_args.lambda_=0,3",
                "--rule",
                "delta",
                "--seeds",
                "100",
                "--out",
                str(tmp_path / "search"),
                "--trainer.max_epochs=10",
                "--model.init_args.lr=0.005",
            ]
        )
    assert chosen["grid_point"][0] in ("--model.init_args.lambda_=0", "--model.init_args.lambda_=3")
    summary = fair_results.main(
        [
            "--chosen",
            str(tmp_path / "search" / "grad_pred_german_chosen.json"),
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert summary[0]["config"] == "grad_pred_german, tuned"
    assert "[" in summary[0]["accuracy"]  # the interval beside mean ± std


def test_every_config_the_usage_names_exists():
    import re

    named = re.findall(r"configs/fair/\w+\.yaml", fair_search.__doc__)
    assert named, "the usage examples name configs"
    for path in named:
        assert (CONFIGS.parents[1] / path).is_file(), path


def test_an_attribute_the_data_does_not_protect_stops_the_search_before_any_fit(
    tmp_path, monkeypatch, capsys
):
    calls = []
    monkeypatch.setattr(fair_search, "fit_chain", _fake_fit(calls))
    args = ["--config", GERMAN, "--grid", "model.init_args.lambda_=1,3", "--rule", "delta"]
    with pytest.raises(SystemExit) as stop:
        fair_search.main([*args, "--attribute", "gender", "--out", str(tmp_path)])
    assert stop.value.code == 2 and calls == []
    err = capsys.readouterr().err
    assert "--attribute gender: the data of" in err and "protects ['age'] only" in err
    chosen = fair_search.main([*args, "--attribute", "age", "--out", str(tmp_path)])
    assert chosen["attribute"] == "age" and len(calls) == 4


def _fold_fit(calls):
    """fit_chain's stand-in: the soft gap 0.1, the hard gap by λ, accuracy by validation fold."""

    def fit(configs, seed, extra, log_root, then):
        calls.append(list(extra))
        lam = float(next(a.split("=")[1] for a in extra if "lambda_" in a))
        fold = int(next((a.split("=")[1] for a in extra if "val_fold=" in a), "0"))
        return {
            "val/accuracy": 0.80 + 0.01 * fold - 0.001 * lam,
            "val/discrimination_age": 0.1,
            "val/discrimination_hard_age": 0.2 / (1 + lam),
            "val/positive_rate": 0.3,
        }

    return fit


def test_the_search_can_read_the_hard_gap_and_average_over_validation_folds(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fair_search, "fit_chain", _fold_fit(calls))
    args = ["--config", GERMAN, "--grid", "model.init_args.lambda_=1,3", "--seeds", "100"]
    options = ["--max_discrimination", "0.06", "--quantity", "hard", "--val_folds", "3"]
    chosen = fair_search.main([*args, *options, "--out", str(tmp_path)])
    # hard gaps 0.1 (λ 1) and 0.05 (λ 3): only λ 3 meets 0.06; the soft gap (0.1) meets neither
    assert chosen["grid_point"] == ["--model.init_args.lambda_=3"] and chosen["met_bound"]
    assert chosen["quantity"] == "hard" and chosen["val_folds"] == 3
    assert "discrimination_hard (age)" in chosen["rule"]
    # every point at every fold, and the folds' mean accuracy (0.80, 0.81, 0.82 - 0.003)
    assert sum("--data.init_args.val_folds=3" in c for c in calls) == 6
    assert chosen["validation"]["accuracy"] == pytest.approx(0.81 - 0.003)
    # reporting trains on the usual split: no fold option in the chosen overrides
    assert not any("val_fold" in o for o in chosen["overrides"])


def test_fewer_than_two_folds_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fair_search, "fit_chain", _fold_fit([]))
    with pytest.raises(SystemExit):
        args = ["--config", GERMAN, "--grid", "model.init_args.lambda_=1", "--rule", "delta"]
        fair_search.main([*args, "--val_folds", "1", "--out", str(tmp_path)])
    assert "--val_folds 1: give 2 or more folds" in capsys.readouterr().err

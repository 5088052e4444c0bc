from pathlib import Path

from lit_rev.evaluation import experiments
from lit_rev.evaluation.experiments import benchmark_claims, score_fixes


def test_the_registry_names_existing_configs_and_paths():
    root = Path(__file__).resolve().parents[2]
    for experiment in experiments.EXPERIMENTS.values():
        for path in experiment.depends:
            assert (root / path).exists(), f"{experiment.name}: {path}"
        for argv in experiment.commands(Path("/work")):
            configs = [a for a in argv if a.startswith("configs/")]
            for config in configs:
                assert (root / config).is_file(), f"{experiment.name}: {config}"


def test_benchmark_claims_follow_the_table():
    def row(detector, set_, auroc, fpr):
        return {"detector": detector, "set": set_, "auroc": auroc, "fpr_at_95_tpr": fpr}

    table = [
        row("net/msp", "noise", 0.2, 1.0),
        row("net/msp", "mnist5k-upsidedown", 0.7, 0.5),
        row("glow/bpd", "noise", 0.99, 0.01),
        row("glow/bpd", "mnist5k-upsidedown", 0.6, 0.9),
        row("glow/bpd", "mean", 0.8, 0.4),
    ]
    claims = benchmark_claims(table)
    assert claims["reach_all"] == "none"
    assert claims["reach_far"] == "glow/bpd"
    assert claims["best_near_detector"] == "net/msp" and claims["best_near_auroc"] == 0.7
    assert claims["logit_below_chance"] == {"net/msp": "noise"}
    assert claims["bpd_far_min_auroc"] == 0.99


def test_score_fixes_name_the_best_other_score_where_bpd_fails():
    table = [
        {"detector": "glow/bpd", "set": "gray", "auroc": 0.3},
        {"detector": "glow/typicality", "set": "gray", "auroc": 0.6},
        {"detector": "glow/complexity", "set": "gray", "auroc": 0.9},
        {"detector": "glow/bpd", "set": "mnist", "auroc": 0.7},
        {"detector": "glow/bpd", "set": "mean", "auroc": 0.1},
    ]
    assert score_fixes(table) == [
        {"set": "gray", "auroc_bpd": 0.3, "best_score": "glow/complexity", "best_auroc": 0.9}
    ]


def test_benchmark_claims_skip_group_means_and_take_the_near_sets_given():
    def row(detector, set_, auroc, fpr):
        return {"detector": detector, "set": set_, "auroc": auroc, "fpr_at_95_tpr": fpr}

    table = [
        row("glow/bpd", "noise", 0.99, 0.01),
        row("glow/bpd", "flipped", 0.6, 0.9),
        row("glow/bpd", "mean", 0.8, 0.4),
        row("glow/bpd", "mean_far", 0.3, 0.9),
        row("glow/bpd", "mean_near", 0.6, 0.9),
    ]
    claims = benchmark_claims(table, near=["flipped"])
    assert claims["reach_far"] == "glow/bpd"
    assert claims["near_ood"] == "flipped" and claims["best_near_auroc"] == 0.6
    assert claims["bpd_far_min_auroc"] == 0.99


def test_equal_terms_rows_and_their_fronts_per_quantity():
    from lit_rev.evaluation.experiments import equal_terms_row, front

    def numeric(config, accuracy, soft, hard):
        row = {"config": config, "collapsed": 0}
        for key, value in (
            ("accuracy", accuracy),
            ("discrimination_soft", soft),
            ("discrimination_hard", hard),
        ):
            row[f"{key}_mean"] = value
            row[f"{key}_ci_seeds_rows_low"] = value - 0.01
            row[f"{key}_ci_seeds_rows_high"] = value + 0.01
        return row

    table = [
        equal_terms_row(numeric("vanilla_x", 0.85, 0.10, 0.12)),
        equal_terms_row(numeric("grad_pred_x, tuned", 0.83, 0.02, 0.15)),
        equal_terms_row(numeric("thresholdopt_mlp_x", 0.80, 0.05, 0.01)),
    ]
    assert table[0]["accuracy_interval"] == "[0.840, 0.860]"
    assert [r["reads_s"] for r in table] == [False, False, True]
    # soft: GRAD dominates nothing but is not dominated; ThresholdOptimizer is (by GRAD)
    assert front(table, "discrimination_soft") == "vanilla_x; grad_pred_x, tuned"
    # hard: GRAD's label gap 0.15 is dominated by Vanilla's 0.12 at higher accuracy
    assert front(table, "discrimination_hard") == "vanilla_x; thresholdopt_mlp_x"

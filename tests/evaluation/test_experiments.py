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

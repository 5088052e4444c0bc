"""The OOD benchmark's table, summary, heat maps and files, on fake scores."""

import csv
import json
import math
import re
from pathlib import Path

import matplotlib.image
import pytest
import torch

from lit_rev.evaluation.ood_benchmark import (
    MEAN,
    MIN_IMAGES,
    TABLE_METRICS,
    benchmark_rows,
    failure_lines,
    reaches_target,
    summary_rows,
    write_tables,
)
from lit_rev.ood import OOD_METRICS, OPENOOD_METRICS, ood_metrics, openood_metrics


def strict_json(path: Path):
    """The JSON document at ``path``, refusing NaN/Infinity (not JSON)."""

    def refuse(token):
        raise ValueError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def fake_scores():
    """Two detectors on an in-distribution set and three OOD sets, with ties."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(50, generator=g).round(decimals=1)
    return {
        "a/score": {
            "in": base,
            "far": base + 100,
            "near": base + 0.3,
            "same": base.clone(),
        },
        "b/score": {
            "in": -base,
            "far": torch.randn(40, generator=g),
            "near": -base + 1,
            "same": base[:30],
        },
    }


def test_table_has_every_detector_set_and_metric():
    scores = fake_scores()
    ood = ["far", "near", "same"]
    rows = benchmark_rows(scores, "in", ood)
    assert [(r["detector"], r["set"]) for r in rows] == [
        (label, s) for label in scores for s in [*ood, MEAN]
    ]
    for r in rows:
        assert all(isinstance(r[m], float) and math.isfinite(r[m]) for m in OOD_METRICS)
        assert "missing" not in r
        if r["set"] != MEAN:  # each cell is ood_metrics of that pair, nothing else
            expected = ood_metrics(scores[r["detector"]]["in"], scores[r["detector"]][r["set"]])
            assert {m: r[m] for m in OOD_METRICS} == expected
    for label in scores:
        per_set = [r for r in rows if r["detector"] == label and r["set"] != MEAN]
        (mean,) = [r for r in rows if r["detector"] == label and r["set"] == MEAN]
        for m in OOD_METRICS:
            assert mean[m] == pytest.approx(sum(r[m] for r in per_set) / len(ood))
    far = next(r for r in rows if r["detector"] == "a/score" and r["set"] == "far")
    assert far["auroc"] == 1.0 and far["fpr_at_95_tpr"] == 0.0  # known answer: separated
    same = next(r for r in rows if r["detector"] == "a/score" and r["set"] == "same")
    assert same["auroc"] == 0.5  # known answer: identical scores


def test_nonfinite_scores_give_a_missing_cell_with_the_reason():
    scores = fake_scores()
    scores["a/score"]["near"][[3, 7]] = float("nan")
    scores["b/score"]["in"][0] = float("inf")
    rows = benchmark_rows(scores, "in", ["far", "near", "same"])
    cell = {(r["detector"], r["set"]): r for r in rows}
    near = cell["a/score", "near"]
    assert all(near[m] is None for m in OOD_METRICS)
    assert near["missing"] == "non-finite scores: 2 of 50 in near"
    # the other cells of the detector stand; its mean does not (a set is missing)
    assert cell["a/score", "far"]["auroc"] == 1.0 and "missing" not in cell["a/score", "far"]
    assert cell["a/score", MEAN]["auroc"] is None
    assert cell["a/score", MEAN]["missing"] == "no mean: no metrics for near"
    # a non-finite in-distribution score leaves no cell of that detector
    for s in ("far", "near", "same"):
        assert cell["b/score", s]["auroc"] is None
        assert cell["b/score", s]["missing"] == "non-finite scores: 1 of 50 in in"
    lines = failure_lines(rows)
    assert "a/score on near: non-finite scores: 2 of 50 in near" in lines
    assert "b/score on far, near, same: non-finite scores: 1 of 50 in in" in lines
    assert reaches_target(rows, "a/score", ["far", "near", "same"]) == "no"  # 'same' fails


def test_a_failed_detector_keeps_its_place_with_the_reason():
    scores = fake_scores()
    order = ["a/score", "c/x", "b/score"]
    rows = benchmark_rows(scores, "in", ["far"], {"c/x": "failed: FloatingPointError: boom"}, order)
    assert [r["detector"] for r in rows] == ["a/score"] * 2 + ["c/x"] * 2 + ["b/score"] * 2
    failed = [r for r in rows if r["detector"] == "c/x"]
    assert failed[0]["missing"] == "failed: FloatingPointError: boom"
    assert failed[1]["auroc"] is None


def test_target_needs_auroc_and_fpr_on_every_set():
    def row(label, s, auroc, fpr):
        return {"detector": label, "set": s, "auroc": auroc, "fpr_at_95_tpr": fpr}

    rows = [
        row("good", "x", 0.95, 0.2),
        row("good", "y", 1.0, 0.0),
        row("fpr", "x", 0.99, 0.21),
        row("fpr", "y", 1.0, 0.0),
        row("auroc", "x", 0.949, 0.0),
        row("auroc", "y", 1.0, 0.0),
        row("missing", "x", None, None),
        row("missing", "y", 1.0, 0.0),
    ]
    verdict = {label: reaches_target(rows, label, ["x", "y"]) for label in ("good", "fpr")}
    assert verdict == {"good": "yes", "fpr": "no"}
    assert reaches_target(rows, "auroc", ["x", "y"]) == "no"
    assert reaches_target(rows, "missing", ["x", "y"]) == "n/a"
    summary = {r["detector"]: r for r in summary_rows(rows, ["x", "y"])}
    assert summary["good"]["x"] == "0.950 / 0.200" and summary["good"]["target"] == "yes"
    assert summary["missing"]["x"] == "n/a"


def test_files_are_written_and_parse(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    scores = fake_scores()
    scores["b/score"]["near"][0] = float("nan")
    ood = ["far", "near", "same"]
    rows = benchmark_rows(scores, "in", ood)
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tensorboard", version="")
    paths = write_tables(rows, ood, tmp_path, {"status": "test"}, logger)
    document = strict_json(tmp_path / "ood_benchmark.json")
    assert document["meta"] == {"status": "test"}
    assert len(document["rows"]) == 2 * 4
    missing = [r for r in document["rows"] if r.get("missing")]
    assert [(r["detector"], r["set"]) for r in missing] == [("b/score", "near"), ("b/score", MEAN)]
    assert missing[0]["auroc"] is None  # null, never NaN
    with open(tmp_path / "ood_benchmark.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and set(OOD_METRICS) <= set(table[0])
    assert table[0]["auroc"] == str(rows[0]["auroc"])
    markdown = (tmp_path / "ood_benchmark.md").read_text()
    assert markdown.startswith("| detector | set | auroc | aupr_in | aupr_out | fpr_at_95_tpr")
    summary = strict_json(tmp_path / "ood_benchmark_summary.json")["rows"]
    assert [r["detector"] for r in summary] == ["a/score", "b/score"]
    assert summary[1]["near"] == "n/a"
    for metric in ("auroc", "fpr_at_95_tpr"):
        image = matplotlib.image.imread(paths[f"heatmap_{metric}"])
        assert image.ndim == 3 and image.std() > 0
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # the two figures and the text


def test_a_verdict_from_too_few_images_is_marked_not_meaningful():
    def row(label, s, auroc, fpr):
        return {"detector": label, "set": s, "auroc": auroc, "fpr_at_95_tpr": fpr}

    rows = [row("good", "x", 1.0, 0.0), row("bad", "x", 0.5, 0.9), row("none", "x", None, None)]
    few = {"in": 1, "x": MIN_IMAGES}
    target = {r["detector"]: r["target"] for r in summary_rows(rows, ["x"], few)}
    assert target == {
        "good": f"too few images (1 < {MIN_IMAGES})",
        "bad": f"too few images (1 < {MIN_IMAGES})",
        "none": "n/a",
    }
    enough = {"in": MIN_IMAGES, "x": MIN_IMAGES}
    target = {r["detector"]: r["target"] for r in summary_rows(rows, ["x"], enough)}
    assert target == {"good": "yes", "bad": "no", "none": "n/a"}


def test_the_table_holds_openoods_forms_beside_ours():
    scores = fake_scores()
    rows = benchmark_rows(scores, "in", ["far", "near", "same"])
    assert (*OOD_METRICS, *OPENOOD_METRICS) == TABLE_METRICS
    for r in rows:
        assert list(r)[2:] == list(TABLE_METRICS)
        if r["set"] != MEAN:
            sets = scores[r["detector"]]
            expected = {
                **ood_metrics(sets["in"], sets[r["set"]]),
                **openood_metrics(sets["in"], sets[r["set"]]),
            }
            assert {m: r[m] for m in TABLE_METRICS} == expected
    # ties (scores rounded to 0.1) make the conventions differ somewhere
    assert any(r["fpr_at_95_tpr"] != r["fpr_at_95_tpr_openood"] for r in rows)
    assert any(r["aupr_out"] != r["aupr_out_openood"] for r in rows)


def test_group_means_sit_beside_the_mean():
    scores = fake_scores()
    groups = {"near": ["near", "same"], "far": ["far"]}
    rows = benchmark_rows(scores, "in", ["far", "near", "same"], groups=groups)
    sets = [r["set"] for r in rows if r["detector"] == "a/score"]
    assert sets == ["far", "near", "same", MEAN, "mean_near", "mean_far"]
    by_set = {r["set"]: r for r in rows if r["detector"] == "b/score"}
    for metric in TABLE_METRICS:
        near = (by_set["near"][metric] + by_set["same"][metric]) / 2
        assert by_set["mean_near"][metric] == pytest.approx(near, abs=1e-15)
        assert by_set["mean_far"][metric] == by_set["far"][metric]
    summary = summary_rows(rows, ["far", "near", "same"])
    assert list(summary[0]) == [
        "detector",
        "metrics",
        "far",
        "near",
        "same",
        MEAN,
        "mean_near",
        "mean_far",
        "target",
    ]
    # a missing cell empties the means of its groups only
    scores["b/score"]["far"][0] = float("nan")
    rows = benchmark_rows(scores, "in", ["far", "near", "same"], groups=groups)
    by_set = {r["set"]: r for r in rows if r["detector"] == "b/score"}
    assert by_set["mean_far"]["auroc"] is None and by_set[MEAN]["auroc"] is None
    assert isinstance(by_set["mean_near"]["auroc"], float)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"near": ["near", "sam"], "far": ["far"]}, "ood_groups.near: 'sam' is not an OOD set"),
        ({"near": ["near", "same"], "far": ["far", "near"]}, "'near' is in both near and far"),
        ({"near": ["near"], "far": ["far"]}, "the OOD sets ['same'] are in no group"),
        ({"near": [], "far": ["far", "near", "same"]}, "ood_groups.near: give at least one"),
        ({"near sets": ["near", "same"], "far": ["far"]}, "group name 'near sets' must be a word"),
    ],
)
def test_groups_must_split_the_ood_sets(groups, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        benchmark_rows(fake_scores(), "in", ["far", "near", "same"], groups=groups)


def test_the_summary_heat_map_and_target_follow_the_fpr_convention(tmp_path):
    def row(s, auroc, fpr, fpr_openood):
        return {
            "detector": "d",
            "set": s,
            "auroc": auroc,
            "fpr_at_95_tpr": fpr,
            "fpr_at_95_tpr_openood": fpr_openood,
        }

    rows = [row("x", 0.97, 0.5, 0.1), row("y", 0.99, 0.3, 0.05)]
    inside = summary_rows(rows, ["x", "y"])[0]
    assert inside["metrics"] == "auroc / fpr_at_95_tpr"
    assert inside["x"] == "0.970 / 0.500" and inside["target"] == "no"
    openood = summary_rows(rows, ["x", "y"], fpr_convention="openood")[0]
    assert openood["metrics"] == "auroc / fpr_at_95_tpr_openood"
    assert openood["x"] == "0.970 / 0.100" and openood["target"] == "yes"
    assert reaches_target(rows, "d", ["x", "y"], "fpr_at_95_tpr_openood") == "yes"
    with pytest.raises(ValueError, match="fpr_convention 'ood' is not one of"):
        summary_rows(rows, ["x", "y"], fpr_convention="ood")
    full = benchmark_rows(fake_scores(), "in", ["far", "near"])
    paths = write_tables(full, ["far", "near"], tmp_path, {}, fpr_convention="openood")
    assert paths["heatmap_fpr_at_95_tpr_openood"].is_file()
    assert not (tmp_path / "heatmap_fpr_at_95_tpr.png").exists()
    summary = strict_json(tmp_path / "ood_benchmark_summary.json")["rows"]
    assert {r["metrics"] for r in summary} == {"auroc / fpr_at_95_tpr_openood"}

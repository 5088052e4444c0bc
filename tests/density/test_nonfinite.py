"""Non-finite scores never become a result, and ``nonfinite='skip'`` cannot hide a diverged run.

A model that diverged scores NaN/inf; an AUROC over such values still ranks them (all-NaN
bits/dim printed 1.000 "separated"), so the report must refuse it, say why and say the run
failed. Training with ``nonfinite='skip'`` warns at every skipped step and stops after
``max_consecutive_skips`` in a row.
"""

import logging
import warnings

import pytest
import torch

from lit_rev.data.datamodule import ImageDataModule
from lit_rev.data.images import Digits
from lit_rev.density import DensityModule
from lit_rev.density.ood_evaluation import evaluate_ood, ood_rows, write_ood_report
from lit_rev.density.scores import OODScore, Typicality
from lit_rev.ood import OOD_METRICS
from tests.test_report import strict_load
from tests.toy_densities import UniformDensity
from tests.trainers import quiet_trainer

NAN, INF = float("nan"), float("inf")


def metrics_of(row, score):
    """The four OOD-metric columns of ``score`` in ``row``, in the order of OOD_METRICS."""
    return [row[f"{metric}_{score}"] for metric in OOD_METRICS]


class Column(OODScore):
    """An OOD score that is a gathered column as it is (so a test can plant a NaN in it)."""

    def compute(self, columns):
        return {"column": columns["column"].double()}


def test_nonfinite_bits_per_dim_get_no_auroc():
    scores = {
        "in": {"bpd": torch.tensor([3.0, 3.5, 4.0])},
        "nan_ood": {"bpd": torch.tensor([5.0, NAN, 6.0])},
        "inf_ood": {"bpd": torch.tensor([INF, 6.0])},
        "fine": {"bpd": torch.tensor([5.0, 6.0])},
    }
    rows = {r["set"]: r for r in ood_rows(scores, "in")}
    for name, bad, n in (("nan_ood", 1, 3), ("inf_ood", 1, 2)):
        assert rows[name]["auroc_bpd"] is None
        assert metrics_of(rows[name], "bpd") == [None] * 4
        assert rows[name]["reading"] == "no AUROC: non-finite scores"
        assert rows[name]["no_auroc"] == f"bpd: non-finite scores: {bad} of {n} in {name}"
        assert rows[name]["nonfinite_bpd"] == bad
    assert rows["fine"]["auroc_bpd"] == 1.0 and "no_auroc" not in rows["fine"]
    assert metrics_of(rows["fine"], "bpd") == [1.0, 1.0, 1.0, 0.0]
    assert rows["in"]["nonfinite_bpd"] == 0

    # a non-finite in-distribution score leaves no OOD set an AUROC
    scores["in"]["bpd"][0] = NAN
    rows = {r["set"]: r for r in ood_rows(scores, "in")}
    assert rows["fine"]["auroc_bpd"] is None
    assert metrics_of(rows["fine"], "bpd") == [None] * 4
    assert rows["fine"]["no_auroc"] == "bpd: non-finite scores: 1 of 3 in in"


def test_all_nan_run_is_reported_as_failed(tmp_path, caplog):
    """The issue's run: every bits/dim NaN. No AUROC, a failed summary, strict JSON."""
    scores = {"in": {"bpd": torch.full((4,), NAN)}, "ood": {"bpd": torch.full((3,), NAN)}}
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning, match="OOD evaluation failed"):
        rows = write_ood_report(scores, "in", tmp_path, meta={"network": "toy"})
    assert rows[1]["auroc_bpd"] is None
    assert rows[1]["no_auroc"] == "bpd: non-finite scores: 3 of 3 in ood, 4 of 4 in in"
    assert "THE RUN FAILED: 4 of 4 bits/dim scores of in are non-finite" in caplog.text
    assert "No OOD set is found more likely" not in caplog.text
    report = strict_load(tmp_path / "ood_report.json")
    assert report["meta"]["status"].startswith("failed: 4 of 4 bits/dim scores of in")
    assert report["meta"]["network"] == "toy"
    assert report["rows"][1]["auroc_bpd"] is None and report["rows"][1]["bpd_mean"] is None
    assert metrics_of(report["rows"][1], "bpd") == [None] * 4
    assert "| n/a | n/a | n/a | n/a |" in (tmp_path / "ood_report.md").read_text()


def test_finite_run_status_is_ok(tmp_path, caplog):
    scores = {"in": {"bpd": torch.tensor([3.0, 4.0])}, "ood": {"bpd": torch.tensor([5.0, 6.0])}}
    with caplog.at_level(logging.INFO):
        rows = write_ood_report(scores, "in", tmp_path)
    assert rows[1]["auroc_bpd"] == 1.0 and rows[1]["reading"] == "separated"
    assert metrics_of(rows[1], "bpd") == [1.0, 1.0, 1.0, 0.0]
    assert "nonfinite_bpd" not in rows[0] and "no_auroc" not in rows[1]
    assert "No OOD set is found more likely" in caplog.text and "FAILED" not in caplog.text
    assert strict_load(tmp_path / "ood_report.json")["meta"]["status"] == "ok"


def test_nonfinite_derived_scores_get_no_auroc(tmp_path, caplog):
    """Finite bits/dim but a NaN in an OOD score: that score's AUROC is refused, bits/dim's kept."""
    scores = {
        "in": {"bpd": torch.tensor([3.0, 4.0]), "column": torch.tensor([0.0, 1.0])},
        "ood": {"bpd": torch.tensor([5.0, 6.0]), "column": torch.tensor([NAN, 2.0])},
    }
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning, match="OOD evaluation failed"):
        rows = write_ood_report(scores, "in", tmp_path, scorers=[Column()])
    assert rows[1]["auroc_bpd"] == 1.0 and rows[1]["reading"] == "separated"
    assert rows[1]["auroc_column"] is None
    assert metrics_of(rows[1], "column") == [None] * 4
    assert metrics_of(rows[1], "bpd") == [1.0, 1.0, 1.0, 0.0]
    assert rows[1]["no_auroc"] == "column: non-finite scores: 1 of 2 in ood"
    assert "THE RUN FAILED: 1 of 2 column scores of ood are non-finite" in caplog.text
    assert "Best OOD score per set: none" in caplog.text
    long = strict_load(tmp_path / "ood_report_scores.json")["rows"]
    assert long == [
        {
            "score": "bpd",
            "set": "ood",
            "auroc": 1.0,
            "aupr_in": 1.0,
            "aupr_out": 1.0,
            "fpr_at_95_tpr": 0.0,
        },
        {
            "score": "column",
            "set": "ood",
            "auroc": None,
            "aupr_in": None,
            "aupr_out": None,
            "fpr_at_95_tpr": None,
            "no_auroc": "non-finite scores: 1 of 2 in ood",
        },
    ]


def test_typicality_without_batches_gets_no_auroc_and_no_nan():
    """A set smaller than the batch size M has no batch scores: no AUROC (was NaN), no failure."""
    scores = {"in": {"bpd": torch.tensor([3.0, 4.0, 3.5])}, "ood": {"bpd": torch.tensor([9.0])}}
    rows = ood_rows(scores, "in", [Typicality(batch_sizes=[2], entropy=3.5)])
    assert rows[1]["auroc_typicality"] == 1.0
    assert rows[1]["auroc_typicality_M2"] is None
    assert metrics_of(rows[1], "typicality_M2") == [None] * 4
    assert rows[1]["no_auroc"] == "typicality_M2: no scores for ood"


# ----- training with nonfinite="skip" -----
class NaNAt(UniformDensity):
    """Log-density NaN at the calls listed in ``bad`` (counted from 0), else uniform."""

    def __init__(self, bad):
        super().__init__()
        self.bad, self.calls = set(bad), 0

    def log_prob(self, x):
        value = NAN if self.calls in self.bad else 0.0
        self.calls += 1
        return torch.full((x.shape[0],), value) + 0 * self.dummy


class FakeStrategy:
    """Stands in for DDP: another rank found a non-finite loss at the steps in ``bad``."""

    def __init__(self, bad):
        self.bad, self.calls = set(bad), 0

    def reduce_boolean_decision(self, decision, all=True):
        assert all
        other_rank = self.calls not in self.bad
        self.calls += 1
        return decision and other_rank


class FakeTrainer:
    def __init__(self, world_size=1, strategy=None):
        self.world_size, self.strategy, self.global_step = world_size, strategy, 0


def steps(module, n):
    """Run ``n`` training steps by hand; returns the outputs."""
    module.log = lambda *a, **k: None
    batch = (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2))
    out = []
    for i in range(n):
        module._trainer.global_step = i
        out.append(module.training_step(batch, i))
    return out


def test_skip_warns_at_every_step_and_stops_after_a_run_of_skips():
    network = NaNAt([1, 3, 4, 6, 7, 8])
    module = DensityModule(network, n_bits=8, nonfinite="skip", max_consecutive_skips=3)
    module._trainer = FakeTrainer()
    with pytest.warns(UserWarning) as record:
        out = steps(module, 8)
    messages = [str(w.message) for w in record if "non-finite loss" in str(w.message)]
    assert [out[i] is None for i in range(8)] == [False, True, False, True, True, False, True, True]
    assert messages == [
        f"non-finite loss (nan) at step {step}: step skipped ({row} in a row, {total} in all; "
        "training stops after 3 in a row, max_consecutive_skips)"
        for step, row, total in ((1, 1, 1), (3, 1, 2), (4, 2, 3), (6, 1, 4), (7, 2, 5))
    ]
    assert int(module.skipped_steps) == 5
    message = (
        r"at step 8: 3 steps in a row skipped \(6 in all; "
        r"max_consecutive_skips = 3\), the model has diverged: lower the"
    )
    with pytest.raises(FloatingPointError, match=message):
        steps_from(module, 8)


def steps_from(module, start):
    batch = (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2))
    module._trainer.global_step = start
    return module.training_step(batch, start)


def test_skip_follows_the_decision_of_all_ranks():
    """Under DDP a step is skipped when any rank's loss is non-finite, and the run of skips
    is counted alike on every rank, so all ranks stop together."""
    module = DensityModule(NaNAt([]), n_bits=8, nonfinite="skip", max_consecutive_skips=2)
    module._trainer = FakeTrainer(world_size=2, strategy=FakeStrategy([1, 2]))
    with (
        pytest.warns(UserWarning, match="at step 1: step skipped"),
        pytest.raises(FloatingPointError, match="at step 2: 2 steps in a row skipped"),
    ):
        steps(module, 4)
    assert int(module.skipped_steps) == 2


def digits(batch_size=16, **kwargs):
    return ImageDataModule(
        Digits(), batch_size=batch_size, max_train=64, max_test=16, val_fraction=0.0, **kwargs
    )


def test_fit_stops_when_every_step_is_skipped(tmp_path):
    """End to end: a model whose every loss is NaN no longer trains 'successfully' under skip."""
    network = NaNAt(range(10**6))
    module = DensityModule(network, nonfinite="skip", max_consecutive_skips=4, num_samples=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(FloatingPointError, match="4 steps in a row skipped"):
            quiet_trainer(tmp_path, max_steps=12).fit(module, digits())
    assert sum("step skipped" in str(w.message) for w in record) == 3
    assert int(module.skipped_steps) == 4


def test_fit_counts_scattered_skips_and_says_so_at_the_end(tmp_path):
    network = NaNAt([0, 2, 4])
    module = DensityModule(network, nonfinite="skip", max_consecutive_skips=2, num_samples=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        quiet_trainer(tmp_path, max_steps=6, limit_val_batches=0).fit(module, digits())
    texts = [str(w.message) for w in record]
    assert sum("step skipped" in t for t in texts) == 3
    assert "3 of 6 training steps were skipped for a non-finite loss" in " ".join(texts)
    assert int(module.skipped_steps) == 3


def test_evaluation_of_a_diverged_model_fails(tmp_path, caplog, monkeypatch):
    """The module end to end: NaN log-densities give a failed report and ``ood_failures``."""
    from torch.utils.data import DataLoader, TensorDataset

    monkeypatch.chdir(tmp_path)  # outside a Trainer the report goes to the working directory
    module = DensityModule(NaNAt(range(10**6)), num_samples=0)
    k = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8)
    loaders = [DataLoader(TensorDataset(k, torch.zeros(6)), batch_size=3) for _ in range(2)]
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning, match="OOD evaluation failed"):
        rows, failed = evaluate_ood(module, loaders, ["in", "ood"])
    assert rows[1]["auroc_bpd"] is None and "THE RUN FAILED" in caplog.text
    assert failed == [
        "6 of 6 bits/dim scores of in are non-finite",
        "6 of 6 bits/dim scores of ood are non-finite",
    ]
    report = strict_load(tmp_path / "ood_report.json")
    assert report["meta"]["status"].startswith("failed: 6 of 6 bits/dim scores of in")
    assert report["rows"][0]["bpd_mean"] is None and report["meta"]["skipped_steps"] == 0

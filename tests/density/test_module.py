import csv
import logging
import math

import pytest
import torch
import torch.nn as nn
from torchmetrics.classification import BinaryAUROC

from lit_rev.density import DensityModule, Glow, bits_per_dim
from lit_rev.density.metrics import BitsPerDim
from lit_rev.density.ood_evaluation import auroc, ood_rows, write_ood_report
from lit_rev.ood import OOD_METRICS
from tests.test_report import strict_load
from tests.toy_densities import Categorical, UniformDensity
from tests.trainers import quiet_trainer


def test_bits_per_dim_of_known_densities():
    assert bits_per_dim(torch.zeros(3), 10, n_bits=8).tolist() == [8.0, 8.0, 8.0]
    assert bits_per_dim(torch.tensor([-10 * math.log(2)]), 10, 0, "mass").item() == pytest.approx(
        1.0
    )
    # a 5-bit image under the uniform density: 5 bits/dim
    module = DensityModule(UniformDensity(), n_bits=5)
    k = torch.randint(0, 32, (4, 1, 2, 2))
    assert torch.allclose(module.scores(k)["bpd"], torch.full((4,), 5.0))


def test_mass_model_bits_per_dim_is_exact_and_normalised():
    model = Categorical(torch.randn(4, 4)).double()  # 4 pixels, 2 bits
    module = DensityModule(model, n_bits=2)
    all_images = torch.cartesian_prod(*[torch.arange(4)] * 4).view(-1, 1, 2, 2)
    bpd = module.scores(all_images)["bpd"]
    total = torch.exp(-bpd.double() * 4 * math.log(2)).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)  # float64 end to end


def test_bits_per_dim_metric_averages_images():
    metric = BitsPerDim()
    metric.update(torch.tensor([1.0, 2.0]))
    metric.update(torch.tensor([6.0]))
    assert metric.compute().item() == pytest.approx(3.0)


def test_flow_scores_decompose_into_density_and_volume():
    glow = Glow(in_channels=1, image_size=8, levels=2, steps=1, hidden_channels=8)
    module = DensityModule(glow, n_bits=8)
    k = torch.randint(0, 256, (3, 1, 8, 8))
    s = module.scores(k)
    assert torch.allclose(s["bpd"], s["prior_bpd"] + s["logdet_bpd"])
    x = (k.float() + 0.5) / 256 - 0.5
    assert torch.allclose(s["bpd"], -glow.log_prob(x) / (64 * math.log(2)) + 8, atol=1e-5)
    assert torch.equal(module.scores(k)["bpd"], s["bpd"])  # evaluation is deterministic


def test_nonfinite_loss_raises_or_skips():
    class Broken(UniformDensity):
        def log_prob(self, x):
            return torch.full((x.shape[0],), float("nan")) + 0 * self.dummy

    class FakeTrainer:
        world_size, global_step = 1, 0

    for policy in ("raise", "skip"):
        module = DensityModule(Broken(), n_bits=8, nonfinite=policy)
        module._trainer = FakeTrainer()
        module.log = lambda *a, **k: None
        batch = (torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2))
        if policy == "raise":
            with pytest.raises(FloatingPointError, match="non-finite loss"):
                module.training_step(batch, 0)
        else:
            assert module.training_step(batch, 0) is None
            assert int(module.skipped_steps) == 1


def test_warmup_is_linear():
    module = DensityModule(UniformDensity(), lr=1.0, warmup_steps=4, optimizer="adam")
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "adamw"])
def test_every_optimiser_runs_its_multi_tensor_update_on_the_cpu_too(optimizer):
    """torch defaults to the per-tensor loop on the CPU; the foreach update is faster there and
    gives the same parameters to the bit."""
    module = DensityModule(UniformDensity(), optimizer=optimizer)
    assert module.configure_optimizers()["optimizer"].defaults["foreach"] is True


def lr_schedule(module, steps):
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_lr_decays_per_step_after_warmup():
    """``lr * lr_decay**(step + 1 - warmup_steps)`` after the linear warm-up (PixelCNN++'s
    reference: 0.999995 per step)."""
    module = DensityModule(UniformDensity(), lr=1.0, warmup_steps=3, lr_decay=0.5, optimizer="adam")
    expected = [1 / 3, 2 / 3, 1.0, 0.5, 0.25, 0.125, 0.0625]
    assert lr_schedule(module, 7) == pytest.approx(expected, rel=1e-12)
    # no warm-up: the reference's schedule, lr * lr_decay**step
    module = DensityModule(UniformDensity(), lr=2e-4, warmup_steps=0, lr_decay=0.999995)
    expected = [2e-4 * 0.999995**s for s in range(4)]
    assert lr_schedule(module, 4) == pytest.approx(expected, rel=1e-12)
    assert module.lr_factor(10**6) == pytest.approx(0.999995**10**6, rel=1e-9)  # 0.0067
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=f"lr_decay must be in \\(0, 1\\].*got {bad}"):
            DensityModule(UniformDensity(), lr_decay=bad)


def test_lr_decay_steps_with_the_trainer(tmp_path):
    """Lightning steps the schedule once per optimizer step (``interval: step``)."""
    from torch.utils.data import DataLoader, TensorDataset

    k = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8)
    loader = DataLoader(TensorDataset(k, torch.zeros(8)), batch_size=2)
    module = DensityModule(UniformDensity(), lr=0.1, warmup_steps=2, lr_decay=0.5, num_samples=0)
    trainer = quiet_trainer(tmp_path, max_steps=5)
    trainer.fit(module, loader)
    assert trainer.global_step == 5
    # the learning rate of the next (6th) step: 0.1 * 0.5**(5 + 1 - 2)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        DensityModule(UniformDensity(), optimizer="lbfgs")
    with pytest.raises(TypeError, match="log_prob"):
        DensityModule(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="max_consecutive_skips must be at least 1, got 0"):
        DensityModule(UniformDensity(), nonfinite="skip", max_consecutive_skips=0)


def test_auroc_conventions():
    low, high = torch.zeros(50), torch.ones(50)
    assert auroc(low, high) == 1.0  # OOD has higher bits/dim: detected
    assert auroc(high, low) == 0.0  # OOD has lower bits/dim: looks more likely
    assert auroc(torch.arange(10.0), torch.arange(10.0)) == pytest.approx(0.5)


def former_auroc(in_scores, ood_scores):
    """The report's AUROC before lit_rev.ood: torchmetrics on the float64 scores as they are."""
    scores = torch.cat([in_scores, ood_scores]).double()
    target = torch.cat([torch.zeros(len(in_scores)), torch.ones(len(ood_scores))]).long()
    return float(BinaryAUROC()(scores, target))


def test_auroc_is_the_former_auroc():
    """Through lit_rev.ood the AUROC is the former one (which added up its rates in float32:
    equal to 1e-6, exactly at 0 and 1), except for scores from 37 on, which torchmetrics'
    sigmoid tied: there the former one was wrong."""
    g = torch.Generator().manual_seed(0)
    for in_scores, ood_scores in [
        (torch.zeros(50), torch.ones(50)),
        (torch.ones(50), torch.zeros(50)),
    ]:
        assert auroc(in_scores, ood_scores) == former_auroc(in_scores, ood_scores)
    cases = [
        (torch.arange(10.0), torch.arange(10.0)),
        (torch.tensor([3.0, 3.5, 4.0]), torch.tensor([1.0, 2.0, 3.5])),
    ]
    for _ in range(5):
        in_scores = 4 + torch.randint(0, 30, (300,), generator=g) / 10  # bits/dim-like, ties
        cases.append((in_scores, 4.5 + torch.randn(200, generator=g)))
    for in_scores, ood_scores in cases:
        assert auroc(in_scores, ood_scores) == pytest.approx(
            former_auroc(in_scores, ood_scores), abs=1e-6
        )
    high_in, high_ood = torch.tensor([40.0, 41.0]), torch.tensor([42.0, 43.0])
    assert former_auroc(high_in, high_ood) == 0.5 and auroc(high_in, high_ood) == 1.0


def test_ood_report_rows_and_files(tmp_path, caplog):
    scores = {
        "in": {"bpd": torch.tensor([3.0, 3.5, 4.0])},
        "easy": {"bpd": torch.tensor([5.0, 6.0])},
        "fooling": {"bpd": torch.tensor([1.0, 2.0])},
    }
    with caplog.at_level(logging.INFO):
        rows = write_ood_report(scores, "in", tmp_path)
    assert [r["set"] for r in rows] == ["in", "easy", "fooling"]
    assert rows[1]["auroc_bpd"] == 1.0 and rows[2]["auroc_bpd"] == 0.0
    assert rows[2]["reading"] == "OOD looks MORE likely"
    assert rows[0]["bpd_mean"] == pytest.approx(3.5)
    for name in ("ood_report.json", "ood_report.csv", "ood_report.md", "hist_bpd.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert ood_rows(scores, "in") == rows
    # the four metrics of bits/dim, side by side; worked by hand for "fooling" (OOD below in):
    # AUPR-in (in positive, ascending bits/dim): 1, 2 are OOD, then 3, 3.5, 4 in at precision
    # 1/3, 2/4, 3/5: (1/3 + 1/2 + 3/5) / 3 = 43/90. AUPR-out (OOD positive, descending): the
    # in-set first, then 2 and 1 at precision 1/4 and 2/5: (1/4 + 2/5) / 2 = 0.325. FPR@95:
    # 95% of 3 in inputs means all three, threshold 4: both OOD inputs are accepted, 1.
    columns = ["auroc_bpd", "aupr_in_bpd", "aupr_out_bpd", "fpr_at_95_tpr_bpd"]
    assert [f"{metric}_bpd" for metric in OOD_METRICS] == columns
    assert [rows[1][c] for c in columns] == [1.0, 1.0, 1.0, 0.0]
    assert [rows[2][c] for c in columns] == pytest.approx([0.0, 43 / 90, 0.325, 1.0], abs=1e-12)
    keys = list(rows[1])
    assert keys[keys.index("auroc_bpd") : keys.index("auroc_bpd") + 4] == columns
    assert all(c not in rows[0] for c in columns)  # no metrics for the in-distribution set
    with open(tmp_path / "ood_report.csv") as f:
        table = list(csv.DictReader(f))
    assert float(table[2]["aupr_out_bpd"]) == pytest.approx(0.325)
    assert (
        strict_load(tmp_path / "ood_report.json")["rows"][2]["aupr_in_bpd"]
        == rows[2]["aupr_in_bpd"]
    )
    assert "| fpr_at_95_tpr_bpd |" in (tmp_path / "ood_report.md").read_text()
    # the printed table: AUROC and FPR@95, the AUPR columns only in the files
    header = next(line for line in caplog.text.splitlines() if line.startswith("set "))
    assert "auroc_bpd" in header and "fpr_at_95_tpr_bpd" in header
    assert "aupr_in_bpd" not in header and "aupr_out_bpd" not in header

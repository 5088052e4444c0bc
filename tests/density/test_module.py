import math

import pytest
import torch
import torch.nn as nn

from lit_rev.density import (
    BitsPerDim,
    DensityModule,
    Glow,
    bits_per_dim,
    ood_rows,
    write_ood_report,
)
from lit_rev.density.ood import auroc
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


def test_ood_report_rows_and_files(tmp_path):
    scores = {
        "in": {"bpd": torch.tensor([3.0, 3.5, 4.0])},
        "easy": {"bpd": torch.tensor([5.0, 6.0])},
        "fooling": {"bpd": torch.tensor([1.0, 2.0])},
    }
    rows = write_ood_report(scores, "in", tmp_path)
    assert [r["set"] for r in rows] == ["in", "easy", "fooling"]
    assert rows[1]["auroc_bpd"] == 1.0 and rows[2]["auroc_bpd"] == 0.0
    assert rows[2]["reading"] == "OOD looks MORE likely"
    assert rows[0]["bpd_mean"] == pytest.approx(3.5)
    for name in ("ood_report.json", "ood_report.csv", "ood_report.md", "hist_bpd.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert ood_rows(scores, "in") == rows

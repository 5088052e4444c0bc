"""OOD scores on synthetic cases with known answers, and their AUROC columns in the report."""

import csv
import io
import logging
import math

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.density import DensityModule, InputComplexity, LikelihoodRatio, Typicality
from lit_rev.density.ood_evaluation import auroc, evaluate_ood, write_ood_report
from lit_rev.density.scores import perturb_images, png_bits, random_batch_means
from lit_rev.ood import OOD_METRICS
from tests.toy_densities import Categorical
from tests.toy_densities import UniformDensity as Uniform


def test_typicality_single_inputs_known_values():
    score = Typicality(entropy=5.0, batch_sizes=[])
    out = score.compute({"bpd": torch.tensor([5.0, 7.0, 3.0, 4.5])})
    assert out["typicality"].tolist() == [0.0, 2.0, 2.0, 0.5]


def test_typicality_entropy_is_estimated_on_reference_data():
    module = DensityModule(Uniform(), n_bits=6)
    loader = DataLoader(
        TensorDataset(torch.randint(0, 64, (20, 1, 4, 4)), torch.zeros(20)), batch_size=8
    )
    score = Typicality()
    score.prepare(module, loader)
    assert score.entropy == pytest.approx(6.0)  # E[-log2 p] / D of the uniform model
    with pytest.raises(ValueError, match="reference"):
        Typicality().prepare(module, None)


def test_batch_typicality_catches_a_set_that_is_too_typical():
    """In-distribution bits/dim scatter +-1 around the entropy H; the OOD set sits at H + 0.5.
    One at a time the OOD inputs look *more* typical (AUROC 0); batches of 50 expose them
    (AUROC ~1)."""
    h = 4.0
    in_bpd = h + torch.tensor([1.0, -1.0]).repeat(500)
    ood_bpd = torch.full((1000,), h + 0.5)
    score = Typicality(entropy=h, batch_sizes=[50], num_batches=300)
    s_in, s_ood = score.compute({"bpd": in_bpd}), score.compute({"bpd": ood_bpd})
    assert auroc(s_in["typicality"], s_ood["typicality"]) == 0.0
    assert auroc(s_in["typicality_M50"], s_ood["typicality_M50"]) > 0.99
    means = random_batch_means(torch.arange(10.0), 10, 3)
    assert torch.allclose(means, torch.full((3,), 4.5))  # each batch holds distinct elements


def test_png_bits_is_the_length_of_a_real_png():
    image = torch.randint(0, 256, (1, 8, 8))
    buffer = io.BytesIO()
    Image.fromarray(image[0].numpy().astype("uint8"), mode="L").save(
        buffer, format="PNG", compress_level=9
    )
    assert png_bits(image) == 8 * len(buffer.getvalue())
    assert png_bits(torch.randint(0, 32, (3, 8, 8)), n_bits=5) > 0


def test_input_complexity_known_answer():
    """Under a model with constant bits/dim, the complexity score is n_bits - L(x)/D: simple images
    (constant) score high, incompressible noise low, and L(noise)/D is at least ~8 bits."""
    module = DensityModule(Uniform(), n_bits=8)
    score = InputComplexity()
    noise = torch.randint(0, 256, (20, 1, 28, 28))
    constant = torch.randint(0, 256, (20, 1, 1, 1)).expand(-1, 1, 28, 28)
    cols = {}
    for name, k in (("noise", noise), ("constant", constant)):
        s = module.scores(k)
        s.update(score.columns(module, k, s))
        cols[name] = s
    assert (cols["noise"]["png_bpd"] > 7.9).all() and (cols["constant"]["png_bpd"] < 1.0).all()
    expected = 8.0 - cols["constant"]["png_bpd"]
    assert torch.allclose(score.compute(cols["constant"])["complexity"], expected.double())
    noise_s, constant_s = (
        score.compute(cols["noise"])["complexity"],
        score.compute(cols["constant"])["complexity"],
    )
    assert auroc(noise_s, constant_s) == 1.0  # constant images OOD for a model of noise: found
    assert auroc(cols["noise"]["bpd"], cols["constant"]["bpd"]) == pytest.approx(
        0.5
    )  # raw likelihood: chance


def test_likelihood_ratio_known_answer_and_checkpoint(tmp_path):
    """Score = bpd(main) - bpd(background) exactly, with the background loaded from a checkpoint."""
    torch.manual_seed(0)
    dims, n_bits = 4, 2
    main = Categorical(torch.randn(dims, 4))
    background_logits = torch.randn(dims, 4)
    module = DensityModule(main, n_bits=n_bits)
    torch.save({"state_dict": {"network.logits": background_logits}}, tmp_path / "bg.ckpt")
    score = LikelihoodRatio(str(tmp_path / "bg.ckpt"))
    score.prepare(module)
    k = torch.randint(0, 4, (10, 1, 2, 2))
    s = module.scores(k)
    s.update(score.columns(module, k, s))
    background = Categorical(background_logits)
    llr = main.log_prob(k) - background.log_prob(k)  # log-likelihood ratio, nats
    assert torch.allclose(
        score.compute(s)["likelihood_ratio"].float(), -llr / (dims * math.log(2)), atol=1e-5
    )
    assert main.logits.requires_grad and not score.background.logits.requires_grad
    with pytest.raises(FileNotFoundError, match="background"):
        LikelihoodRatio(str(tmp_path / "missing.ckpt")).prepare(module)


def test_likelihood_ratio_removes_a_shared_background_term():
    """Main model = background statistics + a semantic term. OOD images match the background
    statistics better (raw AUROC 0) but lack the semantic term: the ratio separates them."""
    torch.manual_seed(0)
    n_bits, dims = 2, 4
    bg_logits = torch.tensor([[3.0, 0.0, 0.0, 0.0]]).repeat(dims, 1)  # background: pixels mostly 0
    semantic = torch.zeros(dims, 4)
    semantic[0, 2] = 6.0  # in-distribution images have pixel 0 equal to 2
    main = Categorical(bg_logits + semantic)
    module = DensityModule(main, n_bits=n_bits)
    score = LikelihoodRatio("unused")
    score.set_background(Categorical(bg_logits))
    in_k = torch.randint(
        1, 4, (50, 1, 2, 2)
    )  # busy pixels: unlikely under the background statistics
    in_k[:, 0, 0, 0] = 2
    ood_k = torch.zeros(
        50, 1, 2, 2, dtype=torch.long
    )  # plain background, without the semantic pixel
    cols = {}
    for name, k in (("in", in_k), ("ood", ood_k)):
        s = module.scores(k)
        s.update(score.columns(module, k, s))
        cols[name] = s
    assert auroc(cols["in"]["bpd"], cols["ood"]["bpd"]) < 0.5
    assert (
        auroc(
            score.compute(cols["in"])["likelihood_ratio"],
            score.compute(cols["ood"])["likelihood_ratio"],
        )
        == 1.0
    )


def test_perturbation_rate():
    k = torch.zeros(200, 1, 10, 10, dtype=torch.long)
    changed = (
        (perturb_images(k, 0.2, 8, torch.Generator().manual_seed(0)) != k).double().mean().item()
    )
    assert changed == pytest.approx(0.2 * 255 / 256, abs=0.01)
    assert perturb_images(k, 0.0, 8) is k


def test_report_has_an_auroc_column_per_score(tmp_path, caplog):
    scores = {
        "in": {"bpd": torch.tensor([3.0, 3.2, 2.8, 3.1])},
        "far": {"bpd": torch.tensor([9.0, 8.0, 9.5])},
        "too_likely": {"bpd": torch.tensor([1.0, 1.1, 0.9])},
    }
    with caplog.at_level(logging.INFO):
        rows = write_ood_report(
            scores,
            "in",
            tmp_path,
            scorers=[Typicality(entropy=3.0, batch_sizes=[2], num_batches=5)],
        )
    assert "too_likely: typicality 1.000 (FPR@95 0.000; bits/dim 0.000)" in caplog.text
    assert rows[2]["auroc_bpd"] == 0.0 and rows[2]["auroc_typicality"] == 1.0
    assert rows[1]["auroc_typicality"] == 1.0 and "auroc_typicality_M2" in rows[1]
    for name in ("ood_report_scores.csv", "hist_typicality.png"):
        assert (tmp_path / name).stat().st_size > 0
    # every score has the four metrics: typicality separates too_likely (|bpd - 3| about 2
    # against at most 0.2), raw bits/dim ranks it below every in-distribution input. By hand,
    # bits/dim: AUPR-in (in positive, ascending) meets the 3 OOD inputs first, then the 4 in
    # at precision 1/4, 2/5, 3/6, 4/7; AUPR-out (OOD positive, descending) meets the 4 in first,
    # then the OOD at 1/5, 2/6, 3/7; the 95% threshold is the largest in score, 3.2: all OOD
    # accepted.
    for score in ("bpd", "typicality", "typicality_M2"):
        assert all(f"{metric}_{score}" in rows[2] for metric in OOD_METRICS)
    assert [rows[2][f"{m}_typicality"] for m in OOD_METRICS] == [1.0, 1.0, 1.0, 0.0]
    expected = [0.0, (1 / 4 + 2 / 5 + 3 / 6 + 4 / 7) / 4, (1 / 5 + 2 / 6 + 3 / 7) / 3, 1.0]
    assert [rows[2][f"{m}_bpd"] for m in OOD_METRICS] == pytest.approx(expected, abs=1e-12)
    with open(tmp_path / "ood_report_scores.csv") as f:
        long = list(csv.DictReader(f))
    assert list(long[0]) == ["score", "set", *OOD_METRICS]
    typicality = next(r for r in long if r["score"] == "typicality" and r["set"] == "too_likely")
    assert float(typicality["fpr_at_95_tpr"]) == 0.0 and float(typicality["aupr_in"]) == 1.0


def test_density_module_evaluates_scores_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = DensityModule(
        Uniform(), n_bits=8, ood_scores=[Typicality(batch_sizes=[2]), InputComplexity()]
    )

    def make(k):
        return DataLoader(TensorDataset(k, torch.zeros(len(k))), batch_size=4)

    noise = torch.randint(0, 256, (8, 1, 8, 8))
    constant = torch.full((8, 1, 8, 8), 7)
    rows, _ = evaluate_ood(
        module, [make(noise), make(constant)], ["noise", "constant"], reference_loader=make(noise)
    )
    assert rows[1]["auroc_complexity"] == 1.0
    assert {"auroc_bpd", "auroc_typicality", "auroc_typicality_M2", "auroc_complexity"} <= set(
        rows[1]
    )
    scores = ("bpd", "typicality", "typicality_M2", "complexity")
    assert {f"{m}_{s}" for m in OOD_METRICS for s in scores} <= set(rows[1])
    assert rows[1]["fpr_at_95_tpr_complexity"] == 0.0 and rows[1]["aupr_out_complexity"] == 1.0
    assert module.test_scores(noise)["png_bpd"].shape == (8,)


def test_cpu_time_budget_stops_training():
    from types import SimpleNamespace

    from lit_rev.callbacks import CPUTimeBudget

    trainer = SimpleNamespace(should_stop=False, global_step=3)
    generous, tight = CPUTimeBudget(seconds=1e6), CPUTimeBudget(seconds=0.01)
    for cb in (generous, tight):
        cb.on_train_start(trainer, None)
    x = torch.randn(200, 200)
    while trainer.should_stop is False:
        x = x @ x.T / 200  # burn CPU time
        generous.on_train_batch_end(trainer, None, None, None, 0)
        assert trainer.should_stop is False
        tight.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop is True

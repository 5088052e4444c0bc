import math

import pytest
import torch
from lightning.pytorch import seed_everything

from lit_rev.data import AdultDataModule, GermanDataModule
from lit_rev.fair import ALFRModule, FrozenEncoderClassifier, GRADModule, LFRModule
from tests.trainers import quiet_trainer


def _trainer(tmp_path, **kwargs):
    return quiet_trainer(tmp_path, **{"max_epochs": 1, **kwargs})


def small_adult(**kwargs):
    return AdultDataModule(**{"max_train": 1500, "max_test": 600, "batch_size": 128, **kwargs})


@pytest.mark.parametrize(
    "model",
    [
        lambda: GRADModule(
            mode="pred", lambda_=3.0, adversary_steps=2, ramp=True, probes=["logistic", "mlp"]
        ),
        lambda: GRADModule(mode="auto", head_hidden=[], probes=["logistic"]),
        lambda: ALFRModule(probes=["logistic"]),
        lambda: LFRModule(prototypes=5, probes=["logistic"]),
    ],
    ids=["grad_pred", "grad_auto", "alfr", "lfr"],
)
def test_models_fit_and_report_every_metric(model, tmp_path):
    seed_everything(0)
    module, data = model(), small_adult(protected=["sex", "race"])
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data, verbose=False)
    r = module.test_results
    for key in ("accuracy", "positive_rate", "consistency", "consistency_hard"):
        assert 0.0 <= r[key] <= 1.0, key
    for attr in ("sex", "race"):
        assert r[f"delta_{attr}"] == pytest.approx(
            r["accuracy"] - r[f"discrimination_{attr}"], abs=1e-5
        )
        for key in ("discrimination", "dp_diff", "eo_diff"):
            assert 0.0 <= r[f"{key}_{attr}"] <= 1.0
        assert 0.0 <= r[f"probe_logistic_acc_{attr}"] <= 1.0 and 0.0 < r[f"majority_{attr}"] <= 1.0
    assert r["accuracy"] > 0.7  # learns something in one short epoch
    assert module.hparams.input_dim == data.input_dim and module.hparams.protected_classes == [2, 5]


def test_vanilla_heads_do_not_touch_the_encoder(tmp_path):
    """lambda_ 0: the encoder's update does not depend on the adversarial heads."""
    torch.manual_seed(0)
    a = GRADModule(lambda_=0.0, input_dim=6, protected_classes=[2])
    b = GRADModule(lambda_=0.0, input_dim=6, protected_classes=[2])
    b.load_state_dict(a.state_dict())
    torch.nn.init.normal_(b.heads.heads[0][0].weight)  # different heads
    x, y, s = torch.randn(16, 6), torch.randint(0, 2, (16,)).float(), torch.randint(0, 2, (16, 1))
    grads = []
    for m in (a, b):
        z = m.encoder(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m.target(z).squeeze(-1), y)
        loss = loss + m.heads.losses(m.reversal(z), s).sum()
        grads.append(torch.autograd.grad(loss, list(m.encoder.parameters())))
    for ga, gb in zip(*grads, strict=True):
        assert torch.allclose(ga, gb)


def test_checkpoint_rebuilds_the_network_and_feeds_the_second_stage(tmp_path):
    seed_everything(0)
    data = small_adult()
    first = GRADModule(mode="auto", lambda_=1.0)
    trainer = _trainer(tmp_path)
    trainer.fit(first, datamodule=data)
    path = tmp_path / "auto.ckpt"
    trainer.save_checkpoint(path)
    again = GRADModule.load_from_checkpoint(path)
    x = data.test_set.x[:5]
    assert torch.allclose(again.representation(x), first.representation(x))

    second = FrozenEncoderClassifier(encoder_ckpt=str(path), probes=["logistic"])
    before = [p.clone() for p in second.encoder.parameters()] if second.built else None
    trainer = _trainer(tmp_path)
    trainer.fit(second, datamodule=data)
    trainer.test(second, datamodule=data, verbose=False)
    for p, q in zip(second.encoder.parameters(), first.encoder.parameters(), strict=True):
        assert torch.equal(p, q)  # frozen
    assert before is None or all(
        torch.equal(p, q) for p, q in zip(before, second.encoder.parameters(), strict=True)
    )
    assert second.test_results["accuracy"] > 0.6

    with pytest.raises(ValueError, match="input columns"):
        other = GermanDataModule()
        trainer = _trainer(tmp_path)
        trainer.fit(FrozenEncoderClassifier(encoder_ckpt=str(path)), datamodule=other)


def test_second_stage_without_checkpoint_warns(tmp_path):
    with pytest.warns(UserWarning, match="RANDOM encoder"):
        FrozenEncoderClassifier(encoder_ckpt=None, input_dim=10, protected_classes=[2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        GRADModule(mode="both")
    with pytest.raises(ValueError, match="adversary_steps"):
        GRADModule(adversary_steps=0)


# --- LFR (Zemel et al. 2013) --------------------------------------------------------------------
def _lfr(**kwargs):
    defaults = dict(input_dim=2, protected_classes=[2], prototypes=2, init="normal")
    return LFRModule(**{**defaults, **kwargs})


def test_lfr_loss_by_hand():
    """Two prototypes (0, 0) and (1, 0), α = 1, w = (0.2, 0.8); rows (0,0) (0,0) | (1,0) (0,0)
    in groups 0 | 1. A row at a prototype is one unit from the other: M = (a, b) or (b, a),
    a = σ(1), b = 1 − a."""
    m = _lfr(fairness_weight=2.0, recon_weight=0.5, label_weight=3.0)
    with torch.no_grad():
        m.prototypes.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        m.log_alpha.zero_()
        m.w_logit.copy_(torch.logit(torch.tensor([0.2, 0.8])))
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    s = torch.tensor([[0], [0], [1], [1]])
    a = 1 / (1 + math.exp(-1))
    b = 1 - a
    # group means of M: (a, b) and ((b + a) / 2, (a + b) / 2) = (1/2, 1/2)
    parity = abs(a - 0.5) + abs(b - 0.5)
    # x̂ = Σ_k M_k v_k = (b, 0) for a row at (0,0) and (a, 0) for (1,0): squared error b² either way
    reconstruction = b**2
    q, r = 0.2 * a + 0.8 * b, 0.2 * b + 0.8 * a  # p at (0,0), at (1,0)
    label = -(math.log(1 - q) + math.log(q) + math.log(r) + math.log(1 - q)) / 4
    out = m.losses(x, y, s)
    assert out["parity"].item() == pytest.approx(parity, rel=1e-5)
    assert out["parity"].item() == pytest.approx(math.tanh(0.5), rel=1e-5)
    assert out["reconstruction"].item() == pytest.approx(reconstruction, rel=1e-5)
    assert out["label"].item() == pytest.approx(label, rel=1e-5)
    assert out["loss"].item() == pytest.approx(
        2.0 * parity + 0.5 * reconstruction + 3.0 * label, rel=1e-5
    )
    assert torch.allclose(m.predict_proba(x), torch.tensor([q, q, r, q]))
    # α scales each coordinate's squared distance: α_0 = 2 makes the off-prototype distance 2
    with torch.no_grad():
        m.log_alpha[0] = math.log(2.0)
    assert torch.allclose(
        m.representation(x[:1]), torch.tensor([[1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))]])
    )


def test_lfr_distances_and_parity_match_the_definitions():
    """The matrix-product distances equal Σ_d α_d (x_d − v_d)²; for a 3-group attribute plus a
    binary one, L_z is the sum over both attributes and all pairs of groups of Σ_k |gap_k|."""
    torch.manual_seed(0)
    m = _lfr(input_dim=5, protected_classes=[3, 2], prototypes=4)
    with torch.no_grad():
        m.log_alpha.normal_()
    x, y = torch.randn(30, 5), torch.randint(0, 2, (30,)).float()
    s = torch.stack([torch.arange(30) % 3, torch.arange(30) % 2], 1)
    naive = ((x[:, None, :] - m.prototypes[None]) ** 2 * m.log_alpha.exp()).sum(-1)
    assert torch.allclose(m.distances(x), naive, atol=1e-4)
    codes = torch.softmax(-naive, 1)
    expected = 0.0
    for a, groups in ((0, 3), (1, 2)):
        means = [codes[s[:, a] == g].mean(0) for g in range(groups)]
        expected += sum(
            (means[g] - means[h]).abs().sum() for g in range(groups) for h in range(g + 1, groups)
        )
    assert m.losses(x, y, s)["parity"].detach().item() == pytest.approx(float(expected), rel=1e-4)


def _separable(n=600, seed=0):
    """y = [x_0 + 0.3 x_2 > 0]; s depends on x_1 only (independent of y): a fair, accurate
    predictor exists, and a constant one scores about 0.5."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] + 0.3 * x[:, 2] > 0).float()
    s = (x[:, 1] + 0.5 * torch.randn(n, generator=g) > 0).long()[:, None]
    return x, y, s


def test_lfr_learns_a_non_constant_predictor_on_separable_data(tmp_path):
    """Full batch, plain DataLoader: no DataModule, so the prototypes are seeded on the first
    batch."""
    seed_everything(0)
    x, y, s = _separable()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y, s), batch_size=len(x), shuffle=True
    )
    model = LFRModule(input_dim=4, protected_classes=[2], prototypes=6, fairness_weight=1.0)
    assert not model.initialised
    _trainer(tmp_path, max_epochs=150, enable_model_summary=False, limit_val_batches=0).fit(
        model, loader
    )
    assert model.initialised
    model.eval()
    xt, yt, st = _separable(seed=1)
    with torch.no_grad():
        p = model.predict_proba(xt)
    predicted = (p >= 0.5).float()
    assert 0.2 < predicted.mean() < 0.8  # not constant
    assert (predicted == yt).float().mean() > 0.85
    assert abs(p[st[:, 0] == 1].mean() - p[st[:, 0] == 0].mean()) < 0.1
    assert (
        model.representation(xt).max(1).values.mean() < 0.99
    )  # soft codes, not one prototype for all


def test_lfr_initialises_from_the_datamodule_once_and_keeps_checkpointed_prototypes(tmp_path):
    seed_everything(0)
    data = small_adult(protected=["sex"], batch_size=2048)
    model = LFRModule(prototypes=4)
    _trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model, datamodule=data)
    assert model.initialised
    rows = data.train_set.x
    path = tmp_path / "lfr.ckpt"
    trainer = _trainer(tmp_path, max_epochs=0, limit_val_batches=0)
    trainer.fit(model, datamodule=data)  # setup again: already initialised, nothing re-seeded
    trainer.save_checkpoint(path)
    again = LFRModule.load_from_checkpoint(path)
    assert torch.equal(again.prototypes, model.prototypes) and bool(again.initialised)
    _trainer(tmp_path, max_epochs=0, limit_val_batches=0).fit(again, datamodule=data)
    assert torch.equal(again.prototypes, model.prototypes)
    # k-means++ seeds: after one step each prototype is still near a training row
    assert torch.cdist(model.prototypes.detach(), rows).min(1).values.max() < 1.0


def test_lfr_on_adult_is_not_constant_and_the_fairness_weight_trades_accuracy_for_parity(tmp_path):
    """Full batch on a 1,500-row Adult sample: A_z = 0 and 1 both give non-constant predictors
    above the majority rate; A_z = 1 has the smaller gap in mean prediction between the sexes."""
    results = {}
    for weight in (0.0, 1.0):
        seed_everything(0)
        data = small_adult(protected=["sex"], batch_size=2048)
        model = LFRModule(fairness_weight=weight)
        trainer = _trainer(tmp_path, max_epochs=150, limit_val_batches=0)
        trainer.fit(model, datamodule=data)
        trainer.test(model, datamodule=data, verbose=False)
        results[weight] = model.test_results
    majority = 1 - float(data.test_set.y.mean())
    for r in results.values():
        assert 0.05 < r["positive_rate"] < 0.5
        assert r["accuracy"] > majority + 0.03
    assert results[1.0]["discrimination_sex"] < 0.5 * results[0.0]["discrimination_sex"]


def test_lfr_bad_arguments():
    with pytest.raises(ValueError, match="init"):
        LFRModule(init="uniform")
    with pytest.raises(ValueError, match="prototypes"):
        LFRModule(prototypes=0)

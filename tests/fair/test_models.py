
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from lit_rev.data import Adult, German
from lit_rev.fair import ALFRModule, FrozenEncoderClassifier, GRADModule, LFRModule

torch.set_num_threads(1)  # small nets on few cores run erratically with more threads


def _trainer(tmp_path, **kwargs):
    defaults = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return Trainer(**{**defaults, **kwargs})


def small_adult(**kwargs):
    return Adult(max_train=1500, max_test=600, batch_size=128, **kwargs)


@pytest.mark.parametrize("model", [
    lambda: GRADModule(mode="pred", lambda_=3.0, adversary_steps=2, ramp=True, probes=["logistic", "mlp"]),
    lambda: GRADModule(mode="auto", head_hidden=[], probes=["logistic"]),
    lambda: ALFRModule(probes=["logistic"]),
    lambda: LFRModule(prototypes=5, probes=["logistic"]),
], ids=["grad_pred", "grad_auto", "alfr", "lfr"])
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
        assert r[f"delta_{attr}"] == pytest.approx(r["accuracy"] - r[f"discrimination_{attr}"], abs=1e-5)
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
    for ga, gb in zip(*grads):
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
    for p, q in zip(second.encoder.parameters(), first.encoder.parameters()):
        assert torch.equal(p, q)  # frozen
    assert before is None or all(torch.equal(p, q) for p, q in zip(before, second.encoder.parameters()))
    assert second.test_results["accuracy"] > 0.6

    with pytest.raises(ValueError, match="input columns"):
        other = German()
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

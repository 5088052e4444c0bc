"""fairlearn's ExponentiatedGradient and ThresholdOptimizer as FairModules.

Known answers: a weighted fit of the MLP estimator reaches the weighted label rate; on a
synthetic set where a proxy of ``s`` drives the label, both fairlearn methods cut the
demographic-parity gap of the unconstrained model to near their tolerance; a checkpoint
gives back the same predictions.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything

from lit_rev.data import GermanDataModule
from lit_rev.fair import ExponentiatedGradientModule, ThresholdOptimizerModule
from lit_rev.fair.fairlearn_baselines import TorchMLPClassifier, import_fairlearn
from tests.trainers import quiet_trainer


def proxy_set(n: int = 2000, seed: int = 0):
    """``x[:, 0]`` is a proxy of the binary ``s``; the label follows it and ``x[:, 1]``."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, 2, (n, 1), generator=g)
    x = torch.randn(n, 4, generator=g)
    x[:, 0] += 1.5 * s[:, 0]
    y = ((x[:, 0] + x[:, 1] + 0.5 * torch.randn(n, generator=g)) > 0.75).float()
    return x, y, s


def gap(p: torch.Tensor, s: torch.Tensor) -> float:
    return float((p[s[:, 0] == 1].mean() - p[s[:, 0] == 0].mean()).abs())


def test_mlp_estimator_honours_sample_weight():
    """Identical rows, half labelled 1: weight 3 on those puts the fit at 3/4, not 1/2."""
    x = np.zeros((400, 3))
    y = np.tile([0, 1], 200)
    kwargs = {"hidden": (8, 8), "epochs": 30, "lr": 1e-2, "lr_schedule": "constant"}
    plain = TorchMLPClassifier(**kwargs).fit(x, y).predict_proba(x[:1])[0, 1]
    weighted = (
        TorchMLPClassifier(**kwargs)
        .fit(x, y, sample_weight=np.where(y == 1, 3.0, 1.0))
        .predict_proba(x[:1])[0, 1]
    )
    assert plain == pytest.approx(0.5, abs=0.03)
    assert weighted == pytest.approx(0.75, abs=0.03)


def test_mlp_estimator_clones_is_seeded_and_leaves_the_global_rng_alone():
    from sklearn.base import clone, is_classifier

    x, y, _ = proxy_set(300)
    estimator = TorchMLPClassifier(hidden=(16, 8), epochs=2, random_state=3)
    assert is_classifier(estimator) and clone(estimator).get_params() == estimator.get_params()
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = clone(estimator).fit(x.numpy(), y.numpy()).predict_proba(x.numpy())
    assert torch.rand(1) == before  # the fit left torch's global generator where it was
    b = clone(estimator).fit(x.numpy(), y.numpy()).predict_proba(x.numpy())
    c = clone(estimator).set_params(random_state=4).fit(x.numpy(), y.numpy())
    assert np.array_equal(a, b) and not np.array_equal(a, c.predict_proba(x.numpy()))
    # the network is the Vanilla configs' (GRADModule pred): encoder, then Linear to one logit
    assert [m.out_features for m in c.network_.modules() if isinstance(m, torch.nn.Linear)] == [
        16,
        8,
        1,
    ]


@pytest.mark.parametrize("estimator", ["logistic", "mlp"])
@pytest.mark.parametrize("method", [ExponentiatedGradientModule, ThresholdOptimizerModule])
def test_fairlearn_methods_close_the_parity_gap_of_a_proxy(method, estimator):
    x, y, s = proxy_set()
    from sklearn.linear_model import LogisticRegression

    unconstrained = LogisticRegression().fit(x.numpy(), y.numpy()).predict(x.numpy())
    assert gap(torch.as_tensor(unconstrained, dtype=torch.float32), s) > 0.35
    module = method(estimator=estimator, epochs=3, input_dim=4, protected_classes=[2])
    torch.manual_seed(0)
    module.fit_on(x, y, s)
    module.on_test_epoch_start()
    with module.given(s):
        p = module.predict_proba(x)
        labels = module.predict_labels(x, p)
    assert set(labels.unique().tolist()) <= {0.0, 1.0}  # one draw of the randomised classifier
    assert gap(labels, s) < 0.06 and gap(p, s) < 0.06
    assert float((labels == y).float().mean()) > 0.65
    # p is the classifier's probability of a positive: what its draws average to
    module.on_test_epoch_start()
    with module.given(s):
        draws = torch.stack([module.predict_labels(x, p) for _ in range(200)])
    assert torch.allclose(draws.mean(0), p, atol=0.15)
    assert float((draws.mean(0) - p).abs().mean()) < 0.03


def test_predictions_need_the_groups_and_a_fit():
    module = ThresholdOptimizerModule(input_dim=4, protected_classes=[2])
    with pytest.raises(RuntimeError, match="not fitted"), module.given(torch.zeros(1, 1)):
        module.predict_proba(torch.zeros(1, 4))
    x, y, s = proxy_set(300)
    module.fit_on(x, y, s)
    with pytest.raises(RuntimeError, match="protected groups"):
        module.predict_proba(x)
    with pytest.raises(ValueError, match=r"probes=\['logistic'\].*probes: \[\]"):
        ExponentiatedGradientModule(probes=["logistic"])
    with pytest.raises(ValueError, match="estimator must be one of"):
        ExponentiatedGradientModule(estimator="forest")


@pytest.mark.parametrize("method", [ExponentiatedGradientModule, ThresholdOptimizerModule])
def test_fit_test_and_checkpoint_through_lightning(method, tmp_path):
    seed_everything(0)
    data = GermanDataModule(batch_size=256)
    module = (
        method(estimator="logistic", max_iter=10)
        if method is ExponentiatedGradientModule
        else method()
    )
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=data)
    trainer.test(module, datamodule=data, verbose=False)
    first = dict(module.test_results)
    assert 0.6 < first["accuracy"] <= 1.0 and 0.0 <= first["discrimination_age"] <= 1.0
    # soft: the gap of fairlearn's probability of a positive; hard: of its drawn labels
    x, y, s = data.test_set.x, data.test_set.y, data.test_set.s
    features = module.sensitive_features(s.numpy())
    kwargs = {} if method is ExponentiatedGradientModule else {"sensitive_features": features}
    pmf = torch.as_tensor(module.model._pmf_predict(x.double().numpy(), **kwargs)[:, 1])
    assert first["discrimination_soft_age"] == pytest.approx(gap(pmf, s), abs=1e-6)
    assert first["discrimination_age"] == first["discrimination_soft_age"]
    drawn = module.model.predict(
        x.double().numpy(), random_state=np.random.RandomState(module.draw_seed), **kwargs
    )
    drawn = torch.as_tensor(np.asarray(drawn), dtype=torch.float32)
    assert first["discrimination_hard_age"] == pytest.approx(gap(drawn, s), abs=1e-6)
    assert first["accuracy"] == pytest.approx(float((drawn == y).float().mean()), abs=1e-6)
    assert first["discrimination_hard_age"] != pytest.approx(first["discrimination_soft_age"])
    trainer.test(module, datamodule=data, verbose=False)
    # the draws restart: same rows, same labels
    assert module.test_results == pytest.approx(first, nan_ok=True)
    path = tmp_path / "fitted.ckpt"
    trainer.save_checkpoint(path)
    loaded = method.load_from_checkpoint(path)
    quiet_trainer(tmp_path).test(loaded, datamodule=data, verbose=False)
    assert loaded.test_results == pytest.approx(first, nan_ok=True)


def write_marker(path):
    """What a crafted checkpoint tries to run on load; harmless: it writes a file."""
    with open(path, "w") as f:
        f.write("ran")


class PicklePayload:
    """Unpickling this calls :func:`write_marker` (as a real attack would call os.system)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return write_marker, (self.path,)


class UntrustedObject:
    """A type that no fitted fairlearn model holds."""

    def __init__(self, path=""):
        self.path = str(path)

    def __setstate__(self, state):
        write_marker(state["path"])


def fitted_checkpoint(tmp_path):
    seed_everything(0)
    data = GermanDataModule(batch_size=256)
    module = ThresholdOptimizerModule()
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=data)
    path = tmp_path / "fitted.ckpt"
    trainer.save_checkpoint(path)
    return path, data


@pytest.mark.parametrize("payload", ["pickle", "skops"])
def test_a_crafted_checkpoint_is_refused_and_runs_no_code(payload, tmp_path):
    """A checkpoint that passes torch.load(weights_only=True) but whose stored model would run
    code when read (a pickle reduce, or a skops file of an untrusted type) is not loaded."""
    import pickle

    import skops.io

    marker = tmp_path / "marker"
    path, data = fitted_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    crafted = (
        pickle.dumps(PicklePayload(marker))
        if payload == "pickle"
        else skops.io.dumps({"model": UntrustedObject(marker), "series": {}})
    )
    checkpoint["fairlearn_model"] = torch.frombuffer(bytearray(crafted), dtype=torch.uint8)
    evil = tmp_path / "evil.ckpt"
    torch.save(checkpoint, evil)
    torch.load(evil, weights_only=True)  # the attack's premise: a "safe" load accepts it
    expected = (
        "not a skops file.*was not loaded"
        if payload == "pickle"
        else r"untrusted type\(s\) tests\.fair\.test_fairlearn_baselines\.UntrustedObject;"
        " the checkpoint was not loaded"
    )
    with pytest.raises(ValueError, match=expected):
        ThresholdOptimizerModule.load_from_checkpoint(evil)
    with pytest.raises(ValueError, match=expected):  # as `python -m lit_rev test --ckpt_path`
        quiet_trainer(tmp_path).test(
            ThresholdOptimizerModule(), datamodule=data, ckpt_path=evil, verbose=False
        )
    assert not marker.exists()


@pytest.mark.parametrize("estimator", ["logistic", "mlp"])
@pytest.mark.parametrize("method", [ExponentiatedGradientModule, ThresholdOptimizerModule])
def test_a_stored_model_predicts_identically_and_leaves_the_global_rng(method, estimator):
    import skops.io

    from lit_rev.fair.fairlearn_baselines import (
        TRUSTED_TYPES,
        dump_fitted_model,
        load_fitted_model,
    )

    x, y, s = proxy_set(400)
    s = torch.cat([s, torch.randint(0, 3, (len(s), 1), generator=torch.Generator())], 1)
    extra = {"max_iter": 3} if method is ExponentiatedGradientModule else {}
    module = method(estimator=estimator, epochs=2, input_dim=4, protected_classes=[2, 3], **extra)
    torch.manual_seed(0)
    module.fit_on(x, y, s)
    data = dump_fitted_model(module.model)
    # the trusted list is what these models hold: no more (every entry is used somewhere)
    assert set(skops.io.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    loaded = load_fitted_model(data, "test")
    assert torch.equal(torch.rand(3), expected_draw)
    xs, groups = x.double().numpy(), module.sensitive_features(s.numpy())
    kwargs = {} if method is ExponentiatedGradientModule else {"sensitive_features": groups}
    np.testing.assert_array_equal(
        np.asarray(loaded._pmf_predict(xs, **kwargs)),
        np.asarray(module.model._pmf_predict(xs, **kwargs)),
    )
    np.testing.assert_array_equal(
        loaded.predict(xs, random_state=7, **kwargs),
        module.model.predict(xs, random_state=7, **kwargs),
    )


def test_the_trusted_types_are_all_needed():
    """Every trusted type occurs in one of the fitted models (none is listed needlessly)."""
    import skops.io

    from lit_rev.fair.fairlearn_baselines import TRUSTED_TYPES, dump_fitted_model

    x, y, s = proxy_set(300)
    seen = set()
    for method, extra in [
        (ExponentiatedGradientModule, {"max_iter": 2}),
        (ExponentiatedGradientModule, {"max_iter": 2, "constraint": "equalized_odds"}),
        (ThresholdOptimizerModule, {}),
    ]:
        module = method(estimator="mlp", epochs=1, input_dim=4, protected_classes=[2], **extra)
        torch.manual_seed(0)
        module.fit_on(x, y, s)
        seen |= set(skops.io.get_untrusted_types(data=dump_fitted_model(module.model)))
    assert seen == set(TRUSTED_TYPES)


def test_a_missing_fairlearn_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "fairlearn.reductions", None)
    with pytest.raises(ImportError, match=r'pip install "lit_rev\[fair\]"'):
        import_fairlearn("reductions")
    module = ExponentiatedGradientModule(input_dim=4, protected_classes=[2])
    with pytest.raises(ImportError, match=r'pip install "lit_rev\[fair\]"'):
        module.fit_on(*proxy_set(100))


def test_lit_rev_fair_imports_without_fairlearn():
    code = (
        "import sys; sys.modules['fairlearn'] = None\n"
        "from lit_rev.fair import ExponentiatedGradientModule, ThresholdOptimizerModule\n"
        "ExponentiatedGradientModule(); ThresholdOptimizerModule()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_testing_without_a_fit_fits_first_and_says_so(tmp_path):
    seed_everything(0)
    module = ThresholdOptimizerModule(estimator="mlp", epochs=1)  # the MLP trains in test mode
    with pytest.warns(UserWarning, match="without a fitted model.*fitting it now"):
        quiet_trainer(tmp_path).test(module, datamodule=GermanDataModule(), verbose=False)
    assert module.model is not None and 0.6 < module.test_results["accuracy"] <= 1.0


def test_the_difference_bound_sets_the_trade_off_and_eps_does_not():
    """docs/fair.md sweeps difference_bound for ExponentiatedGradient's line; eps is only the
    reduction's tolerance. On the proxy set a looser bound lets the gap grow, a looser eps not."""
    x, y, s = proxy_set()

    def fitted_gap(**kwargs):
        module = ExponentiatedGradientModule(input_dim=4, protected_classes=[2], **kwargs)
        module.fit_on(x, y, s)
        module.on_test_epoch_start()
        with module.given(s):
            return gap(module.predict_proba(x), s)

    tight = fitted_gap(difference_bound=0.01)
    assert fitted_gap() == pytest.approx(tight, abs=0.02)  # None is fairlearn's 0.01
    assert fitted_gap(difference_bound=0.2) > tight + 0.1
    assert fitted_gap(difference_bound=0.01, eps=0.2) < tight + 0.05

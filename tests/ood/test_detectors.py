"""Known answers for the classifier OOD detectors, on hand-built networks with known logits."""

import math
from typing import get_args

import numpy as np
import pytest
import torch
from torch import nn

from lit_rev.ood import detectors as detectors_module
from lit_rev.ood.detectors import (
    DETECTORS,
    KNN,
    ODIN,
    ClassifierDetector,
    DetectorName,
    Energy,
    Mahalanobis,
    MaxLogit,
    MaxSoftmax,
    make_detector,
)


class LinearNet(nn.Module):
    """``features(x) = x`` (flattened), ``logits = x @ weight.T + bias``: every number known.

    It records, for each call, whether it ran in training mode and with autograd on.
    """

    def __init__(self, weight, bias=None):
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float64)
        self.linear = nn.Linear(weight.shape[1], weight.shape[0]).double()
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(
                torch.zeros(weight.shape[0]) if bias is None else torch.as_tensor(bias)
            )
        self.calls = []

    def features(self, x):
        self.calls.append(("features", self.training, torch.is_grad_enabled()))
        return x.flatten(1).to(self.linear.weight.dtype)

    def forward(self, x):
        self.calls.append(("forward", self.training, torch.is_grad_enabled()))
        return self.linear(x.flatten(1).to(self.linear.weight.dtype))


class LogitsOnly(nn.Module):
    """A network that gives logits and no features."""

    def forward(self, x):
        return x


class OnceLoader:
    """A training loader that counts its passes and refuses a second one."""

    def __init__(self, batches):
        self.batches = batches
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        if self.passes > 1:
            raise AssertionError("fit iterated the training loader twice")
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def batches_of(features, labels, size):
    x, y = torch.as_tensor(features), torch.as_tensor(labels)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def identity():
    """Logits and features equal to the input."""
    return LinearNet(torch.eye(2))


def test_names_and_registry_agree():
    assert set(DETECTORS) == set(get_args(DetectorName))
    assert all(cls.name == name for name, cls in DETECTORS.items())
    assert all(issubclass(cls, ClassifierDetector) for cls in DETECTORS.values())
    assert isinstance(make_detector("knn", k=3), KNN) and make_detector("knn", k=3).k == 3


def test_make_detector_names_the_choices_and_the_arguments():
    with pytest.raises(ValueError, match=r"detector must be one of 'msp', .*'knn', got 'mspp'"):
        make_detector("mspp")
    with pytest.raises(TypeError, match=r"detector 'energy' takes temperature; got epsilon"):
        make_detector("energy", epsilon=0.1)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Energy(temperature=0), "temperature must be > 0"),
        (lambda: ODIN(temperature=-1), "temperature must be > 0"),
        (lambda: ODIN(epsilon=-0.1), "epsilon must be >= 0"),
        (lambda: ODIN(input_scale=0), "input_scale must be > 0"),
        (lambda: KNN(k=0), "k must be an integer >= 1"),
        (lambda: KNN(k=2.5), "k must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_logit_detectors_known_answers():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [2.0, -1.0]], dtype=torch.float64)
    msp = MaxSoftmax().score(identity(), logits)
    assert msp.dtype == torch.float64 and msp.shape == (3,)
    # softmax([0, ln 3]) = [1/4, 3/4]; softmax([0, 0]) = [1/2, 1/2]
    expected_msp = [-0.75, -0.5, -1 / (1 + math.exp(-3.0))]
    torch.testing.assert_close(msp, torch.tensor(expected_msp, dtype=torch.float64))
    torch.testing.assert_close(
        MaxLogit().score(identity(), logits),
        torch.tensor([-math.log(3.0), 0.0, -2.0], dtype=torch.float64),
    )
    # energy = -T log(sum_c exp(f_c / T)), written out
    for t in (1.0, 2.0):
        expected = [-t * math.log(sum(math.exp(v / t) for v in row)) for row in logits.tolist()]
        torch.testing.assert_close(
            Energy(temperature=t).score(identity(), logits),
            torch.tensor(expected, dtype=torch.float64),
        )


def test_max_softmax_separates_confident_inputs_that_float32_would_tie():
    # 1 / (1 + e^-30) and 1 / (1 + e^-31) are both 1.0 in float32
    net = LinearNet(torch.eye(2)).float()
    logits = torch.tensor([[0.0, 30.0], [0.0, 31.0]])
    scores = MaxSoftmax().score(net, logits)
    assert scores[1] < scores[0]
    torch.testing.assert_close(
        scores[0], torch.tensor(-1 / (1 + math.exp(-30.0)), dtype=torch.float64)
    )


def test_odin_moves_a_one_dimensional_input_away_from_the_boundary():
    # logits = [x, -x]: for x > 0 the confidence in class 0 grows with x, so the step is +eps;
    # for x < 0 the predicted class is 1 and the step is -eps.
    net = LinearNet([[1.0], [-1.0]])
    odin = ODIN(temperature=10.0, epsilon=0.1)
    x = torch.tensor([[0.5], [-0.25]], dtype=torch.float64)
    torch.testing.assert_close(
        odin.perturb(net, x), torch.tensor([[0.6], [-0.35]], dtype=torch.float64)
    )
    # softmax([a, -a] / T) has maximum 1 / (1 + exp(-2|a| / T))
    expected = [-1 / (1 + math.exp(-2 * 0.6 / 10)), -1 / (1 + math.exp(-2 * 0.35 / 10))]
    torch.testing.assert_close(odin.score(net, x), torch.tensor(expected, dtype=torch.float64))
    # epsilon = 0 is temperature scaling alone
    plain = ODIN(temperature=10.0, epsilon=0.0).score(net, x)
    expected = [-1 / (1 + math.exp(-2 * 0.5 / 10)), -1 / (1 + math.exp(-2 * 0.25 / 10))]
    torch.testing.assert_close(plain, torch.tensor(expected, dtype=torch.float64))


def odin_step_sign_by_hand(weight, x, temperature):
    """sign of grad_x log max_c softmax(W x / T)_c = (W_c* - p @ W) / T, p = softmax(W x / T)."""
    z = weight @ x / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return np.sign((weight[np.argmax(z)] - p @ weight) / temperature)


def test_odin_perturbs_along_the_temperature_scaled_gradient():
    """Three classes, two input dimensions: at x = (1, 1) the logits are (3, 2, 4); with T = 1
    the softmax is peaked and the first coordinate's gradient is negative, with T = 1000 it is
    nearly uniform and that gradient is positive. ODIN must step with the sign at its own T."""
    weight = np.array([[3.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    net = LinearNet(weight)
    x = np.array([1.0, 1.0])
    sign_at_1000 = odin_step_sign_by_hand(weight, x, 1000.0)
    sign_at_1 = odin_step_sign_by_hand(weight, x, 1.0)
    assert sign_at_1000.tolist() == [1.0, 1.0] and sign_at_1.tolist() == [-1.0, 1.0]
    for temperature, sign in ((1000.0, sign_at_1000), (1.0, sign_at_1)):
        got = ODIN(temperature=temperature, epsilon=0.1).perturb(
            net, torch.tensor([x], dtype=torch.float64)
        )
        torch.testing.assert_close(got, torch.tensor([x + 0.1 * sign], dtype=torch.float64))


def test_odin_step_is_epsilon_in_the_networks_input_units():
    net = LinearNet([[1.0], [-1.0]])
    assert ODIN(epsilon=0.01).step(net) == 0.01  # no max_pixel: inputs already in [0, 1]
    net.max_pixel = 10.0
    assert ODIN(epsilon=0.01).step(net) == pytest.approx(0.1)
    assert ODIN(epsilon=0.01, input_scale=2.0).step(net) == pytest.approx(0.02)
    x = torch.tensor([[0.5]], dtype=torch.float64)
    torch.testing.assert_close(ODIN(temperature=10.0, epsilon=0.01).perturb(net, x), x + 0.1)


def test_odin_takes_no_parameter_gradient_and_restores_the_mode():
    net = LinearNet([[1.0], [-1.0]])
    net.train()
    ODIN().score(net, torch.tensor([[0.5]], dtype=torch.float64))
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    # the gradient pass (autograd on) and the scoring pass (off), both in eval mode
    assert net.calls == [("forward", False, True), ("forward", False, False)]


def test_odin_explains_that_it_cannot_run_under_inference_mode():
    net = LinearNet([[1.0], [-1.0]])
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        ODIN().score(net, torch.tensor([[0.5]], dtype=torch.float64))
    with torch.no_grad():  # plain no_grad is fine: ODIN turns autograd on for its input gradient
        assert ODIN().score(net, torch.tensor([[0.5]], dtype=torch.float64)).shape == (1,)


def mahalanobis_by_numpy(train, labels, queries, inverse):
    classes = np.unique(labels)
    means = np.stack([train[labels == c].mean(axis=0) for c in classes])
    centred = train - means[np.searchsorted(classes, labels)]
    precision = inverse(centred.T @ centred / len(train))
    return np.array(
        [min((q - m) @ precision @ (q - m) for m in means) for q in queries], dtype=np.float64
    )


def test_mahalanobis_matches_numpys_inverse_covariance():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [7, 9, 8])
    train = rng.normal(size=(24, 3)) + labels[:, None] * np.array([2.0, -1.0, 0.5])
    queries = rng.normal(size=(6, 3)) * 3
    net = LinearNet(torch.eye(3))
    detector = Mahalanobis().fit(net, OnceLoader(batches_of(train, labels, 5)))
    expected = mahalanobis_by_numpy(train, labels, queries, np.linalg.inv)
    np.testing.assert_allclose(
        detector.score(net, torch.tensor(queries)).numpy(), expected, rtol=1e-10
    )


def test_mahalanobis_uses_the_pseudo_inverse_for_dead_features():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 6)
    train = np.concatenate([rng.normal(size=(12, 2)) + labels[:, None], np.zeros((12, 1))], axis=1)
    queries = np.concatenate([rng.normal(size=(4, 2)), np.zeros((4, 1))], axis=1)
    net = LinearNet(torch.eye(3)[:2])
    detector = Mahalanobis().fit(net, batches_of(train, labels, 12))
    scores = detector.score(net, torch.tensor(queries))
    expected = mahalanobis_by_numpy(train, labels, queries, np.linalg.pinv)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("chunk_entries", [2**22, 7])
def test_knn_matches_a_brute_force_sorted_distance_list(monkeypatch, chunk_entries):
    monkeypatch.setattr(detectors_module, "KNN_CHUNK_ENTRIES", chunk_entries)
    rng = np.random.default_rng(2)
    train = rng.normal(size=(20, 4))
    queries = np.concatenate([rng.normal(size=(5, 4)), 3 * train[:1]])  # last: a training point
    net = LinearNet(torch.eye(4)[:2])
    detector = KNN(k=3).fit(net, OnceLoader(batches_of(train, np.zeros(20), 6)))
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    expected = []
    for q in queries:
        q = q / np.linalg.norm(q)
        expected.append(sorted(np.linalg.norm(unit - q, axis=1))[2])
    np.testing.assert_allclose(
        detector.score(net, torch.tensor(queries)).numpy(), expected, rtol=1e-9
    )
    # a rescaled training point is its own nearest neighbour: distance 0 at k = 1
    nearest = (
        KNN(k=1).fit(net, batches_of(train, np.zeros(20), 6)).score(net, torch.tensor(queries))
    )
    assert nearest[-1] == pytest.approx(0.0, abs=1e-7)
    assert (nearest[:-1] > 1e-3).all()


def test_knn_needs_k_training_images():
    net = LinearNet(torch.eye(2))
    with pytest.raises(ValueError, match="k=5 but the training loader gave only 4 images"):
        KNN(k=5).fit(net, batches_of(np.ones((4, 2)), np.zeros(4), 2))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_fit_reads_the_training_loader_once_and_score_never(name):
    train = np.array([[3.0, 0.1], [0.2, 3.0], [2.8, -0.1], [0.0, 3.1]])
    loader = OnceLoader(batches_of(train, [0, 1, 0, 1], 3))
    net = LinearNet(torch.eye(2))
    detector = make_detector(name, **({"k": 2} if name == "knn" else {})).fit(net, loader)
    fits_statistics = name in ("mahalanobis", "knn")
    assert loader.passes == (1 if fits_statistics else 0)
    detector.score(net, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert loader.passes == (1 if fits_statistics else 0)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_higher_means_more_ood_on_a_synthetic_pair(name):
    generator = torch.Generator().manual_seed(3)

    def cluster(centre, n):
        return torch.tensor(centre, dtype=torch.float64) + 0.3 * torch.randn(
            n, 2, generator=generator, dtype=torch.float64
        )

    train_x = torch.cat([cluster([3.0, 0.0], 20), cluster([0.0, 3.0], 20)])
    train_y = torch.repeat_interleave(torch.tensor([0, 1]), 20)
    inside = torch.cat([cluster([3.0, 0.0], 10), cluster([0.0, 3.0], 10)])
    outside = cluster([-3.0, -3.0], 20)  # far from both classes, in a direction of its own
    net = LinearNet(torch.eye(2))
    kwargs = (
        {"k": 5}
        if name == "knn"
        else {"temperature": 10.0, "epsilon": 0.01}
        if name == "odin"
        else {}
    )
    detector = make_detector(name, **kwargs).fit(net, batches_of(train_x, train_y, 16))
    in_scores, out_scores = detector.score(net, inside), detector.score(net, outside)
    assert in_scores.shape == (20,) and torch.isfinite(in_scores).all()
    assert out_scores.min() > in_scores.max()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_the_network_runs_in_eval_mode_without_autograd_and_keeps_its_mode(name):
    net = LinearNet(torch.eye(2))
    net.train()
    detector = make_detector(name, **({"k": 1} if name == "knn" else {}))
    detector.fit(net, batches_of(np.eye(2), [0, 1], 2))
    detector.score(net, torch.tensor([[1.0, 0.5]], dtype=torch.float64))
    assert net.training
    assert net.calls and all(not training for _, training, _ in net.calls)
    if name != "odin":  # ODIN's first pass takes the input gradient (tested above)
        assert all(not grad for _, _, grad in net.calls)


@pytest.mark.parametrize("detector", [Mahalanobis(), KNN(k=1)], ids=["mahalanobis", "knn"])
def test_feature_detectors_need_fit_and_features(detector):
    with pytest.raises(RuntimeError, match=r"before fit: call fit\(network, train_loader\)"):
        detector.score(identity(), torch.ones(1, 2))
    with pytest.raises(TypeError, match="LogitsOnly has no features"):
        detector.fit(LogitsOnly(), [(torch.ones(2, 2), torch.tensor([0, 1]))])
    detector.fit(identity(), [(torch.eye(2), torch.tensor([0, 1]))])
    with pytest.raises(ValueError, match="fitted on 2-dim features but the network gives 3"):
        detector.score(LinearNet(torch.eye(3)), torch.ones(1, 3))


def test_fit_refuses_an_empty_training_loader():
    with pytest.raises(ValueError, match="the training loader gave no batch"):
        Mahalanobis().fit(identity(), [])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_scores_uint8_batches_of_a_revnet_classifier(name):
    from lit_rev.revnet import ImageClassifier, RevNet

    torch.manual_seed(0)
    backbone = RevNet("revnet38", units=[1, 1], channels=[8, 8, 16], num_classes=4, in_channels=1)
    model = ImageClassifier(backbone, num_classes=4, mean=[0.5], std=[0.25])
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    loader = OnceLoader(batches_of(images, torch.arange(12) % 4, 5))
    detector = make_detector(name, **({"k": 3} if name == "knn" else {})).fit(model, loader)
    scores = detector.score(model, images[:7])
    assert scores.shape == (7,) and scores.dtype == torch.float64
    assert torch.isfinite(scores).all() and model.training
    if name == "odin":  # the step is epsilon on [0, 1] images: 255 * epsilon uint8 levels
        assert detector.step(model) == pytest.approx(0.0014 * 255)


class PeakNet(nn.Module):
    """One input ``x``; logits ``(10 - 100 (x - 0.5)^2, 0)``: class 0 is surest at x = 0.5."""

    def forward(self, x):
        x = x.flatten(1).double()
        peak = 10 - 100 * (x[:, :1] - 0.5) ** 2
        return torch.cat([peak, torch.zeros_like(peak)], dim=1)


class SpyLoader:
    """A loader that records every batch it gives."""

    def __init__(self, batches):
        self.batches = batches
        self.given = []

    def __iter__(self):
        for batch in self.batches:
            self.given.append(batch[0])
            yield batch


def test_odin_calibrate_picks_the_argmax_of_the_criterion_on_a_constructed_case():
    # Inputs 0.499 and 0.501, 0.001 from the peak: ODIN steps towards it (the gradient of the
    # confidence points there), so eps = 0.001 lands on the peak, 0.0005 and 0.0014 stop
    # short of it or pass it, and 0.005 overshoots by 0.004. With T in the grid, T = 1 keeps
    # the softmax sharpest. The criterion's argmax is (T, eps) = (1, 0.001).
    net = PeakNet()
    validation = SpyLoader(
        batches_of(np.array([[0.499], [0.501]]), [0, 0], 1),
    )
    odin = ODIN(temperature="auto", epsilon="auto").calibrate(net, validation)
    assert (odin.temperature, odin.epsilon) == (1.0, 0.001)
    assert len(validation.given) == 2  # one pass over the validation loader
    # the criterion by brute force: every (T, eps) of the grid, scored by fixed ODINs
    x = torch.tensor([[0.499], [0.501]], dtype=torch.float64)
    means = {
        (t, e): float(-ODIN(temperature=t, epsilon=e).score(net, x).mean())
        for t in detectors_module.ODIN_TEMPERATURES
        for e in detectors_module.ODIN_EPSILONS
    }
    assert max(means, key=means.get) == (1.0, 0.001)
    assert odin.selection["mean_max_softmax"] == pytest.approx(list(means.values()), abs=1e-8)
    assert odin.describe()["temperature"] == 1.0 and odin.describe()["epsilon"] == 0.001
    assert odin.describe()["chosen_on_validation"] == ["temperature", "epsilon"]
    # the chosen setting scores as the fixed ODIN with those values
    torch.testing.assert_close(
        odin.score(net, x), ODIN(temperature=1.0, epsilon=0.001).score(net, x)
    )


def test_odin_calibrate_chooses_only_what_is_auto_and_nothing_when_fixed():
    net = PeakNet()
    x = np.array([[0.499], [0.501]])
    # T fixed at 1000: only epsilon is chosen, over the grid given
    odin = ODIN(temperature=1000.0, epsilon="auto", epsilons=[0.0, 0.002, 0.001])
    odin.calibrate(net, batches_of(x, [0, 0], 2))
    assert (odin.temperature, odin.epsilon) == (1000.0, 0.001)
    assert odin.describe()["chosen_on_validation"] == ["epsilon"]
    # both fixed (the paper's setting): calibrate reads nothing
    loader = OnceLoader(batches_of(x, [0, 0], 2))
    fixed = ODIN(temperature=1000.0, epsilon=0.0014).calibrate(net, loader)
    assert loader.passes == 0 and fixed.describe() == {"temperature": 1000.0, "epsilon": 0.0014}


def test_odin_auto_must_calibrate_before_scoring_and_refuses_bad_grids():
    net = PeakNet()
    with pytest.raises(RuntimeError, match="calibrate"):
        ODIN(temperature="auto").score(net, torch.tensor([[0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="no image"):
        ODIN(epsilon="auto").calibrate(net, [])
    with pytest.raises(ValueError, match="temperatures must be a non-empty list of numbers > 0"):
        ODIN(temperatures=[0.0, 1.0])
    with pytest.raises(ValueError, match="epsilons must be a non-empty list of numbers >= 0"):
        ODIN(epsilons=[])
    with pytest.raises(ValueError, match="temperature must be > 0 or 'auto'"):
        ODIN(temperature="best")


@pytest.mark.parametrize(
    ("bank", "k"), [(50_000, 50), (2_000, 2), (1_500, 2), (2_500, 2), (10, 1), (500, 1)]
)
def test_knn_auto_k_scales_with_the_bank(bank, k):
    # round(50 * bank / 50000), at least 1; round takes halves to even (1.5 -> 2, 2.5 -> 2)
    assert detectors_module.knn_auto_k(bank) == k


def test_knn_auto_sets_k_from_the_bank_it_fits_and_reports_it():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(2_000, 3))
    queries = torch.tensor(rng.normal(size=(5, 3)))
    net = LinearNet(torch.eye(3))
    auto = KNN(k="auto").fit(net, batches_of(train, np.zeros(2_000), 500))
    assert auto.k == 2
    assert auto.describe() == {
        "k": 2,
        "bank": 2_000,
        "k_rule": "auto: round(50 * bank / 50000), at least 1",
    }
    fixed = KNN(k=2).fit(net, batches_of(train, np.zeros(2_000), 500))
    torch.testing.assert_close(auto.score(net, queries), fixed.score(net, queries))
    with pytest.raises(ValueError, match="or 'auto'"):
        KNN(k="many")

"""Known answers for the WAIC ensemble score (Choi et al. 2018)."""

import math

import pytest
import torch

from lit_rev.ood.ensemble import waic_score


def test_three_models_two_points_known_answer():
    # point 0: log-likelihoods -1, -2, -3: mean -2, population variance 2/3 -> WAIC -8/3
    # point 1: -2 under every model: mean -2, variance 0 -> WAIC -2
    log_likelihoods = torch.tensor([[-1.0, -2.0], [-2.0, -2.0], [-3.0, -2.0]])
    scores = waic_score(log_likelihoods)
    assert scores.dtype == torch.float64 and scores.shape == (2,)
    torch.testing.assert_close(scores, torch.tensor([8 / 3, 2.0], dtype=torch.float64))


def test_variance_is_the_population_variance_over_the_models():
    # two models at -1 and -4: mean -2.5, population variance 2.25 (the sample variance is 4.5)
    scores = waic_score(torch.tensor([[-1.0], [-4.0]]))
    assert scores.item() == pytest.approx(2.5 + 2.25)


def test_ordering_likelier_and_agreed_inputs_score_lower():
    log_likelihoods = torch.tensor(
        [
            # likely and agreed, unlikely and agreed, likely but disputed
            [-1.0, -5.0, 0.0],
            [-1.0, -5.0, -2.0],
            [-1.0, -5.0, -1.0],
        ]
    )
    scores = waic_score(log_likelihoods)
    assert scores[0] < scores[1]  # a lower mean log-likelihood is more OOD
    assert scores[0] < scores[2]  # same mean, disagreement is more OOD
    assert scores[2].item() == pytest.approx(1.0 + 2 / 3)


def test_units_weigh_the_penalty():
    # in bits the penalty weighs 1 / ln 2 more than in nats, relative to the mean
    nats = torch.tensor([[-1.0, -2.0], [-3.0, -2.0]])
    bits = nats / math.log(2)
    torch.testing.assert_close(
        waic_score(bits) * math.log(2),
        -nats.double().mean(0) + nats.double().var(0, correction=0) / math.log(2),
    )


@pytest.mark.parametrize(
    "values, message",
    [
        (torch.zeros(1, 4), r"needs K >= 2 models .* got K=1"),
        (torch.zeros(4), r"must be \(K models, N inputs\), got shape \(4,\)"),
        (torch.tensor([[0.0, float("nan")], [0.0, 0.0]]), r"1 non-finite .* \[0, 1\]"),
        (torch.tensor([[0.0, 0.0], [float("-inf"), 0.0]]), r"1 non-finite .* \[1, 0\]"),
    ],
)
def test_bad_input_is_refused(values, message):
    with pytest.raises(ValueError, match=message):
        waic_score(values)

"""``ood_metrics`` and ``openood_metrics`` against sklearn and OpenOOD's formula, known answers."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from lit_rev.ood import OOD_METRICS, OPENOOD_METRICS, ood_metrics, openood_metrics


def sklearn_metrics(in_scores, ood_scores) -> dict[str, float]:
    """The reference: sklearn with the same convention (higher score = more OOD)."""
    scores = np.concatenate([np.asarray(in_scores, float), np.asarray(ood_scores, float)])
    is_ood = np.r_[np.zeros(len(in_scores)), np.ones(len(ood_scores))]
    # TPR on the in-distribution set: in-distribution positive, negated score; every ROC point
    fpr, tpr, _ = roc_curve(1 - is_ood, -scores, drop_intermediate=False)
    return {
        "auroc": roc_auc_score(is_ood, scores),
        "aupr_in": average_precision_score(1 - is_ood, -scores),
        "aupr_out": average_precision_score(is_ood, scores),
        "fpr_at_95_tpr": fpr[np.argmax(tpr >= 0.95)],
    }


def assert_matches_sklearn(in_scores, ood_scores):
    got = ood_metrics(torch.as_tensor(in_scores), torch.as_tensor(ood_scores))
    want = sklearn_metrics(in_scores, ood_scores)
    assert list(got) == list(OOD_METRICS)
    for key in OOD_METRICS:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    return got


def random_sets(seed):
    """Pairs of overlapping sets: integer-valued (many ties) and continuous (many values)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(20):
        n, m = (int(v) for v in torch.randint(1, 60, (2,), generator=g))
        yield (
            torch.randint(0, 6, (n,), generator=g).double(),
            torch.randint(2, 9, (m,), generator=g).double(),
        )
    for n, m in ((400, 300), (57, 511)):
        yield (
            torch.randn(n, generator=g, dtype=torch.float64),
            0.7 + torch.randn(m, generator=g, dtype=torch.float64),
        )
    # ties and distinct values in one set, scores far outside [0, 1]
    yield (
        torch.cat([torch.full((150,), 40.0), 40 + torch.randn(200, generator=g).abs()]),
        torch.cat([torch.full((80,), 40.0), 41 + torch.randn(300, generator=g).abs() * 50]),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_on_random_sets_with_ties(seed):
    for in_scores, ood_scores in random_sets(seed):
        assert_matches_sklearn(in_scores, ood_scores)


@pytest.mark.parametrize(
    ("in_scores", "ood_scores", "expected"),
    [
        ([0.0, 1.0, 2.0], [5.0, 6.0], (1.0, 1.0, 1.0, 0.0)),  # perfectly separated
        ([5.0, 6.0], [0.0, 1.0, 2.0], (0.0, None, None, 1.0)),  # reversed: OOD looks in-dist
        ([3.0, 3.0, 3.0], [3.0, 3.0], (0.5, 0.6, 0.4, 1.0)),  # identical scores
        ([1.0, 2.0], [1.0, 2.0], (0.5, None, None, 1.0)),  # identical sets
    ],
)
def test_separated_reversed_and_identical_sets(in_scores, ood_scores, expected):
    got = assert_matches_sklearn(in_scores, ood_scores)
    for key, value in zip(OOD_METRICS, expected, strict=True):
        if value is not None:
            assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize(
    ("in_scores", "ood_scores"),
    [
        ([0.0], [1.0]),
        ([1.0], [0.0]),
        ([1.0], [1.0]),
        ([0.0, 1.0], [1.0]),
        ([2.0], [1.0, 3.0]),
        ([0.0, 2.0, 2.0], [2.0, 1.0, 5.0]),
        ([-1.0, 4.0, 4.0], [4.0]),
    ],
)
def test_matches_sklearn_on_tiny_sets(in_scores, ood_scores):
    assert_matches_sklearn(in_scores, ood_scores)


def test_known_answers_worked_by_hand():
    # in = 0 1 2 3, OOD = 2 4 5 (one tie, at 2).
    # AUROC: of the 12 (OOD, in) pairs OOD is higher in 2 + 4 + 4, tied in 1: 10.5 / 12.
    # AUPR-out (OOD positive, descending score): at 5, 4 precision 1 (recall 1/3, 2/3); at 3
    #   recall stays; at 2 (both tied inputs) 3 of 5 (recall 1): 1/3 + 1/3 + 1/3 * 3/5 = 13/15.
    # AUPR-in (in positive, ascending score): at 0, 1 precision 1 (recall 1/4, 2/4); at 2
    #   3 of 4; at 3 4 of 5: 1/4 + 1/4 + 1/4 * 3/4 + 1/4 * 4/5 = 0.8875.
    # FPR@95: 95% of 4 in-distribution inputs is 3.8, so all 4: threshold 3; OOD at or
    #   below 3: the 2, so 1/3.
    got = ood_metrics(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 5.0]))
    assert got == pytest.approx(
        {"auroc": 10.5 / 12, "aupr_in": 0.8875, "aupr_out": 13 / 15, "fpr_at_95_tpr": 1 / 3},
        abs=1e-12,
    )


def test_fpr_at_95_tpr_accepts_ties_at_the_threshold():
    # in = 0..19: 19 of 20 (exactly 95%) are at or below 18, so the threshold is 18. The two
    # OOD inputs at 18 are accepted with it (ties count as accepted), 19 and 40 are not: 2 / 4.
    # (Ties rejected would give 0; a threshold one step too far, 19, would give 3 / 4.)
    in_scores = torch.arange(20.0)
    got = ood_metrics(in_scores, torch.tensor([18.0, 18.0, 19.0, 40.0]))
    assert got["fpr_at_95_tpr"] == 0.5
    assert_matches_sklearn(in_scores, [18.0, 18.0, 19.0, 40.0])


def test_fpr_at_95_tpr_is_exact_where_sklearns_default_curve_skips_the_point():
    """Each of 20 score values is held by one in-distribution and one OOD input: the ROC
    curve is a straight line, whose inner points sklearn's default drop_intermediate=True
    drops; the exact answer (threshold 18: 19 of 20 in each set accepted) is 0.95."""
    values = np.arange(20.0)
    got = ood_metrics(torch.as_tensor(values), torch.as_tensor(values))
    assert got["fpr_at_95_tpr"] == pytest.approx(0.95, abs=1e-12)
    is_in = np.r_[np.ones(20), np.zeros(20)]
    fpr, tpr, _ = roc_curve(is_in, -np.r_[values, values])  # OpenOOD's call
    assert fpr[np.argmax(tpr >= 0.95)] == 1.0


def test_scores_outside_zero_one_keep_their_order():
    """torchmetrics applies a sigmoid to scores outside [0, 1]; in float64 it is 1.0 from 37
    on, which tied these sets (the former report gave AUROC 0.5)."""
    got = ood_metrics(torch.tensor([40.0, 41.0]), torch.tensor([42.0, 43.0]))
    assert got == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr_at_95_tpr": 0.0}
    assert ood_metrics(torch.tensor([1e4, 2e4]), torch.tensor([-5e4, 3e4]))["auroc"] == 0.5


def test_convention_swapping_and_negating():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 10, (70,), generator=g).double()
    b = torch.randint(3, 14, (50,), generator=g).double()
    forward = ood_metrics(a, b)
    assert forward["auroc"] > 0.5  # b scores higher: detected as OOD
    # swapping the sets flips AUROC to 1 - AUROC
    assert ood_metrics(b, a)["auroc"] == pytest.approx(1 - forward["auroc"], abs=1e-12)
    # AUPR-in of s equals AUPR-out of -s with the sets swapped, and back
    assert forward["aupr_in"] == pytest.approx(ood_metrics(-b, -a)["aupr_out"], abs=1e-12)
    assert forward["aupr_out"] == pytest.approx(ood_metrics(-b, -a)["aupr_in"], abs=1e-12)
    # a monotone transform of the scores changes nothing
    assert ood_metrics(torch.exp(a / 3), torch.exp(b / 3)) == pytest.approx(forward, abs=1e-12)


@pytest.mark.parametrize(
    ("in_scores", "ood_scores", "message"),
    [
        ([1.0, float("nan"), 2.0], [3.0], r"in_scores holds 1 non-finite \(NaN or infinite\) of 3"),
        ([1.0], [float("inf"), -float("inf")], r"ood_scores holds 2 non-finite .* of 2 scores"),
        ([], [1.0], "in_scores is empty"),
        ([1.0], [], "ood_scores is empty"),
        (
            [[1.0, 2.0]],
            [1.0],
            r"in_scores must hold one score per input, shape \(N,\), got shape \(1, 2\)",
        ),
    ],
)
def test_bad_scores_raise_naming_the_set(in_scores, ood_scores, message):
    with pytest.raises(ValueError, match=message):
        ood_metrics(torch.tensor(in_scores), torch.tensor(ood_scores))


def test_metrics_are_float64_python_floats():
    got = ood_metrics(torch.rand(30, dtype=torch.float32), torch.rand(7, dtype=torch.float32))
    assert all(type(v) is float for v in got.values())
    assert torch.get_default_dtype() == torch.float32  # restored after the torchmetrics calls


def test_integer_scores_above_2_to_the_53_keep_their_order():
    """int64 scores 2**60 + i collapse to a few float64 values; ranked as integers they are
    two separated sets (AUROC 1), exactly as the same order in small integers."""
    base = 2**60
    inside = torch.arange(0, 50, dtype=torch.int64) + base
    outside = torch.arange(50, 80, dtype=torch.int64) + base
    assert len(torch.unique(torch.cat([inside, outside]).to(torch.float64))) < 80  # the trap
    got = ood_metrics(inside, outside)
    assert got == ood_metrics(inside - base, outside - base)
    assert got == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr_at_95_tpr": 0.0}
    # interleaved: the same as small integers with that order, ties included
    mixed_in = torch.tensor([0, 2, 2, 5, 7, 9]) + base
    mixed_out = torch.tensor([1, 2, 6, 8, 8]) + base
    assert ood_metrics(mixed_in, mixed_out) == ood_metrics(mixed_in - base, mixed_out - base)
    # numpy int64 and uint64 too
    assert ood_metrics(inside.numpy(), outside.numpy().astype(np.uint64))["auroc"] == 1.0
    with pytest.raises(ValueError, match=r"ood_scores holds uint64 scores of 2\*\*63 or more"):
        ood_metrics(inside.numpy(), np.array([2**63, 2**64 - 1], dtype=np.uint64))


def test_integers_beside_floats_rank_together_only_where_float64_is_exact():
    small = ood_metrics(torch.tensor([1, 2, 3]), torch.tensor([2.5, 4.0]))
    assert small == ood_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.5, 4.0]))
    with pytest.raises(
        ValueError,
        match=r"ood_scores holds integer scores .* \(above 2\*\*53\).*"
        r"in_scores holds floats",
    ):
        ood_metrics(torch.tensor([1.0, 2.0]), torch.tensor([2**60, 2**60 + 1]))


def openood_reference(in_scores, ood_scores, drop_intermediate: bool) -> dict[str, float]:
    """OpenOOD v1.5's ``auc_and_fpr_recall``: ``conf`` is the negated score, OOD positive."""
    conf = -np.concatenate([np.asarray(in_scores, float), np.asarray(ood_scores, float)])
    ood_indicator = np.r_[np.zeros(len(in_scores)), np.ones(len(ood_scores))]
    fpr, tpr, _ = roc_curve(ood_indicator, -conf, drop_intermediate=drop_intermediate)
    precision_in, recall_in, _ = precision_recall_curve(1 - ood_indicator, conf)
    precision_out, recall_out, _ = precision_recall_curve(ood_indicator, -conf)
    return {
        "aupr_in_openood": auc(recall_in, precision_in),
        "aupr_out_openood": auc(recall_out, precision_out),
        "fpr_at_95_tpr_openood": fpr[np.argmax(tpr >= 0.95)],
    }


def assert_matches_openood(in_scores, ood_scores, drop_intermediate=False):
    got = openood_metrics(torch.as_tensor(in_scores), torch.as_tensor(ood_scores))
    want = openood_reference(in_scores, ood_scores, drop_intermediate)
    assert list(got) == list(OPENOOD_METRICS)
    for key in OPENOOD_METRICS:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    return got


@pytest.mark.parametrize("seed", [0, 1])
def test_openood_forms_match_openoods_formula_on_random_sets_with_ties(seed):
    for in_scores, ood_scores in random_sets(seed):
        assert_matches_openood(in_scores, ood_scores)


def test_openood_forms_match_openoods_own_call_on_distinct_scores():
    """With every score distinct, OpenOOD's default drop_intermediate=True keeps the point."""
    g = torch.Generator().manual_seed(5)
    for n, m in ((300, 200), (40, 700), (1, 3)):
        in_scores = torch.randn(n, generator=g, dtype=torch.float64)
        ood_scores = 0.5 + torch.randn(m, generator=g, dtype=torch.float64)
        assert_matches_openood(in_scores, ood_scores, drop_intermediate=True)


@pytest.mark.parametrize(
    ("in_scores", "ood_scores"),
    [([0.0], [1.0]), ([1.0], [0.0]), ([1.0], [1.0]), ([0.0, 2.0, 2.0], [2.0, 1.0, 5.0])],
)
def test_openood_forms_match_on_tiny_sets(in_scores, ood_scores):
    assert_matches_openood(in_scores, ood_scores)


def test_the_two_fpr_conventions_known_answers():
    # in = 0 1 2 10, OOD = 3 4 5 6.
    # TPR on in (fpr_at_95_tpr): all 4 in-distribution inputs must be accepted, so the
    #   threshold is 10 and every OOD input is accepted: 1.
    # TPR on OOD (OpenOOD): all 4 OOD inputs must be flagged (score >= t), so t = 3; of the
    #   in-distribution set only the 10 is flagged: 1/4.
    in_scores, ood_scores = torch.tensor([0.0, 1.0, 2.0, 10.0]), torch.tensor([3.0, 4, 5, 6])
    assert ood_metrics(in_scores, ood_scores)["fpr_at_95_tpr"] == 1.0
    assert openood_metrics(in_scores, ood_scores)["fpr_at_95_tpr_openood"] == 0.25


def test_the_openood_fpr_flags_ties_at_its_threshold():
    # in = 0 1 2 3 3, OOD = 3 3 4 5 (ties at 3 across the sets).
    # TPR on in: 95% of 5 is 4.75, so all 5: threshold 3, OOD at or below 3: 2 of 4 = 0.5.
    # TPR on OOD: 95% of 4 is 3.8, so all 4: t = 3; in-distribution at or above 3, the two
    #   tied 3s included: 2 of 5 = 0.4. (Ties not flagged would give 0.)
    in_scores, ood_scores = torch.tensor([0.0, 1, 2, 3, 3]), torch.tensor([3.0, 3, 4, 5])
    assert ood_metrics(in_scores, ood_scores)["fpr_at_95_tpr"] == 0.5
    assert openood_metrics(in_scores, ood_scores)["fpr_at_95_tpr_openood"] == pytest.approx(0.4)
    assert_matches_openood(in_scores, ood_scores)


def test_the_trapezoid_aupr_known_answers_with_ties():
    # in = 0 1, OOD = 1 2 (a tie at 1).
    # OOD positive, descending score: at 2 precision 1, recall 1/2; at 1 (both tied inputs)
    #   precision 2/3, recall 1. Average precision: 1/2 + 1/2 * 2/3 = 5/6. Trapezoids from
    #   (0, 1): 1/2 * 1 + 1/2 * (1 + 2/3) / 2 = 11/12.
    # in positive, ascending score: at 0 precision 1, recall 1/2; at 1 precision 2/3, recall 1:
    #   the same areas, by symmetry.
    in_scores, ood_scores = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
    average = ood_metrics(in_scores, ood_scores)
    trapezoid = openood_metrics(in_scores, ood_scores)
    assert average["aupr_out"] == pytest.approx(5 / 6, abs=1e-12)
    assert average["aupr_in"] == pytest.approx(5 / 6, abs=1e-12)
    assert trapezoid["aupr_out_openood"] == pytest.approx(11 / 12, abs=1e-12)
    assert trapezoid["aupr_in_openood"] == pytest.approx(11 / 12, abs=1e-12)
    # without ties each step is a corner (0 1 2 3 against 2 4 5: the tie at 2 aside, worked
    # in test_known_answers_worked_by_hand): in = 0 1 2 3, OOD = 4 5 gives both 1
    separated = openood_metrics(torch.tensor([0.0, 1, 2, 3]), torch.tensor([4.0, 5]))
    assert separated == {m: (0.0 if m.startswith("fpr") else 1.0) for m in OPENOOD_METRICS}


def test_openood_forms_refuse_bad_scores_as_ood_metrics_does():
    with pytest.raises(ValueError, match="ood_scores holds 1 non-finite"):
        openood_metrics(torch.tensor([0.0, 1.0]), torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="in_scores is empty"):
        openood_metrics(torch.zeros(0), torch.tensor([1.0]))

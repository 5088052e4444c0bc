import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_rev.fair.bootstrap import bootstrap_replicates, percentile_interval, resample_weights
from lit_rev.fair.metrics import (
    Consistency,
    Delta,
    DemographicParityDifference,
    Discrimination,
    DisparateImpactRatio,
    EqualizedOddsDifference,
    EqualizedOddsRatio,
    EqualOpportunityDifference,
    GroupRates,
    PositiveRate,
    PredictionRows,
    neighbour_agreement,
    neighbour_means,
)


def value(metric, *args):
    metric.update(*args)
    return float(metric.compute())


def test_discrimination_binary_by_hand():
    p = torch.tensor([0.9, 0.1, 0.5, 0.7])
    s = torch.tensor([1, 0, 0, 1])
    # mean over s=1: (0.9 + 0.7)/2 = 0.8; over s=0: (0.1 + 0.5)/2 = 0.3
    assert value(Discrimination(), p, s) == pytest.approx(0.5)


def test_discrimination_categorical_is_largest_pairwise_gap_and_ignores_empty_groups():
    p = torch.tensor([0.2, 0.4, 0.9, 0.5, 0.5, 0.8])
    s = torch.tensor([0, 0, 1, 3, 3, 3])  # group 2 has no rows
    # means: 0.3, 0.9, -, 0.6 -> 0.9 - 0.3
    assert value(Discrimination(4), p, s) == pytest.approx(0.6)


def test_discrimination_single_group_is_zero_and_updates_accumulate():
    assert value(Discrimination(), torch.tensor([0.2, 0.9]), torch.tensor([1, 1])) == 0.0
    m = Discrimination()
    m.update(torch.tensor([1.0]), torch.tensor([1]))
    m.update(torch.tensor([0.0, 0.5]), torch.tensor([0, 0]))
    assert float(m.compute()) == pytest.approx(0.75)


def test_discrimination_rejects_codes_out_of_range():
    with pytest.raises(ValueError, match="protected codes"):
        Discrimination(2).update(torch.tensor([0.5]), torch.tensor([2]))


def test_threshold_ties_count_as_positive():
    p = torch.tensor([0.5, 0.49, 0.5, 0.1])
    s = torch.tensor([0, 0, 1, 1])
    assert value(PositiveRate(), p) == pytest.approx(0.5)
    # hard predictions 1,0 | 1,0 -> equal positive rates
    assert value(DemographicParityDifference(), p, s) == 0.0
    # probabilities: 0.495 vs 0.3
    assert value(Discrimination(), p, s) == pytest.approx(0.195)


def test_delta_is_accuracy_minus_discrimination():
    p = torch.tensor([0.9, 0.1, 0.5, 0.7])
    y = torch.tensor([1, 0, 0, 0])
    s = torch.tensor([1, 0, 0, 1])
    # hard 1,0,1,1 vs 1,0,0,0: accuracy 0.5; discrimination 0.5
    assert value(Delta(), p, y, s) == pytest.approx(0.0, abs=1e-6)


def test_equalized_odds_by_hand():
    #            y=1 rows          y=0 rows
    p = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.7, 0.1, 0.3, 0.9])
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    s = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    # TPR: group0 2/2, group1 1/2 -> gap 0.5; FPR: group0 1/2, group1 1/2 -> gap 0
    assert value(EqualizedOddsDifference(), p, y, s) == pytest.approx(0.5)
    # a label with one group only contributes no gap
    assert (
        value(
            EqualizedOddsDifference(),
            torch.tensor([0.9, 0.1]),
            torch.tensor([1, 0]),
            torch.tensor([0, 1]),
        )
        == 0.0
    )


def test_consistency_by_hand():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    p = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    # k=2 neighbours, self excluded, ties to the lower index:
    #   0:{1,2} mean .5 -> .5   1:{0,2} mean 1 -> 1   2:{1,0} -> .5   3:{4,2} -> .5   4:{3,2} -> .5
    assert value(Consistency(k=2), x, p) == pytest.approx(1 - 3.0 / 5)


def test_consistency_ties_go_to_the_lower_index_and_duplicates_count():
    x = torch.tensor([[0.0], [1.0], [-1.0], [5.0]])
    p = torch.tensor([0.0, 1.0, 0.5, 0.0])
    # k=1: row 0 is equally far from rows 1 and 2 -> row 1. |0-1| + |1-0| + |.5-0| + |0-1| = 3.5
    assert value(Consistency(k=1), x, p) == pytest.approx(1 - 3.5 / 4)
    dup = torch.tensor([[0.0], [0.0], [0.0], [3.0]])
    q = torch.tensor([1.0, 0.0, 0.0, 1.0])
    # rows 0-2 are each other's neighbours at distance 0 (self excluded); row 3's nearest is row 0
    # k=1: 0->1 (|1-0|), 1->0 (|0-1|), 2->0 (|0-1|), 3->0 (|1-1|)  => 3/4
    assert value(Consistency(k=1), dup, q) == pytest.approx(0.25)


def test_consistency_hard_thresholds_first():
    x = torch.tensor([[0.0], [1.0], [2.0]])
    p = torch.tensor([0.6, 0.4, 0.5])  # hard: 1, 0, 1
    # k=1: 0->1 |1-0|; 1->0 (tie with 2, lower index) |0-1|; 2->1 |1-0|
    assert value(Consistency(k=1, hard=True), x, p) == pytest.approx(0.0)
    # probabilities: |.6-.4| + |.4-.6| + |.5-.4| = .5
    assert value(Consistency(k=1), x, p) == pytest.approx(1 - 0.5 / 3)


def test_constant_predictor_scores_perfect_fairness_but_the_positive_rate_shows_it():
    x, s = torch.randn(50, 3), torch.randint(0, 2, (50,))
    p = torch.zeros(50)
    assert value(Discrimination(), p, s) == 0.0
    assert value(Consistency(), x, p) == 1.0
    assert value(PositiveRate(), p) == 0.0


@pytest.mark.parametrize("window", [1, 3, 64])
def test_neighbour_means_matches_brute_force_with_many_ties(window):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (200, 3), generator=g).float()  # 8 distinct points: ties everywhere
    v = torch.rand(200, generator=g)
    got = neighbour_means(x, v, k=7, chunk_size=37, window=window)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    d.fill_diagonal_(float("inf"))
    want = torch.stack(
        [v[sorted(range(200), key=lambda j: (float(d[i, j]), j))[:7]].mean() for i in range(200)]
    )
    assert torch.allclose(got, want, atol=1e-6)


def test_equal_opportunity_and_ratios_by_hand():
    #            y=1 rows          y=0 rows
    p = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.7, 0.1, 0.3, 0.9])
    y = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    s = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    # TPR: 2/2 vs 1/2; FPR: 1/2 vs 1/2; positive rates 3/4 vs 2/4
    assert value(EqualOpportunityDifference(), p, y, s) == pytest.approx(0.5)
    assert value(DisparateImpactRatio(), p, s) == pytest.approx(2 / 3)
    assert value(EqualizedOddsRatio(), p, y, s) == pytest.approx(0.5)  # min(1/2, 1)
    # no positive prediction at all: the ratios are 0/0, undefined (as fairlearn's)
    zero = torch.zeros(8)
    assert math.isnan(value(DisparateImpactRatio(), zero, s))
    assert math.isnan(value(EqualizedOddsRatio(), zero, y, s))
    # positives among y=0 rows only: the TPR ratio is undefined, the FPR ratio counts
    q = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.9, 0.9])
    assert value(EqualizedOddsRatio(), q, y, s) == pytest.approx(0.5)
    # one group only: parity with itself
    assert value(DisparateImpactRatio(), p, torch.zeros(8, dtype=torch.long)) == 1.0


def test_group_rates_by_hand_and_an_empty_group_is_nan():
    p = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.7, 0.1])
    y = torch.tensor([1, 1, 0, 1, 0, 0])
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    m = GroupRates(3)
    m.update(p, y, s)
    table = m.compute()
    assert GroupRates.COLUMNS == ("n", "base_rate", "positive_rate", "accuracy", "tpr", "fpr")
    # group 0: n 3, base 2/3, positives 2/3, correct 3/3, TPR 2/2, FPR 0/1
    assert table[0].tolist() == pytest.approx([3, 2 / 3, 2 / 3, 1.0, 1.0, 0.0])
    # group 1: n 3, base 1/3, positives 2/3 (0.6, 0.7), correct 2/3, TPR 1/1, FPR 1/2
    assert table[1].tolist() == pytest.approx([3, 1 / 3, 2 / 3, 2 / 3, 1.0, 0.5])
    assert table[2, 0] == 0 and torch.isnan(table[2, 1:]).all()
    with pytest.raises(ValueError, match="target must be 0 or 1"):
        GroupRates(2).update(p, y + 1, s.clamp_max(1))


def _fair_data(n=500, groups=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g)
    s = torch.randint(0, groups, (n,), generator=g)
    # labels correlated with the group and the prediction, so the gaps are not tiny
    y = (torch.rand(n, generator=g) < 0.3 + 0.2 * (s == 0) + 0.3 * (p > 0.5)).long()
    return p, y, s


@pytest.mark.parametrize("groups", [2, 4])
def test_group_rates_and_gaps_agree_with_fairlearn(groups):
    import numpy as np
    from fairlearn import metrics as fl
    from sklearn.metrics import accuracy_score

    p, y, s = _fair_data(groups=groups)
    hard = (p >= 0.5).long().numpy()
    yn, sn = y.numpy(), s.numpy()
    frame = fl.MetricFrame(
        metrics={
            "n": fl.count,
            "base_rate": lambda t, _: float(np.mean(t)),
            "positive_rate": fl.selection_rate,
            "accuracy": accuracy_score,
            "tpr": fl.true_positive_rate,
            "fpr": fl.false_positive_rate,
        },
        y_true=yn,
        y_pred=hard,
        sensitive_features=sn,
    )
    rates = GroupRates(groups)
    rates.update(p, y, s)
    ours = rates.compute()
    for column, name in enumerate(GroupRates.COLUMNS):
        theirs = frame.by_group[name].to_numpy(dtype=float)
        assert np.allclose(ours[:, column].numpy(), theirs, atol=1e-6, rtol=0), name
    want = {
        "dp_diff": fl.demographic_parity_difference(yn, hard, sensitive_features=sn),
        "di_ratio": fl.demographic_parity_ratio(yn, hard, sensitive_features=sn),
        "eo_diff": fl.equalized_odds_difference(yn, hard, sensitive_features=sn),
        "eo_ratio": fl.equalized_odds_ratio(yn, hard, sensitive_features=sn),
        "eop_diff": fl.equal_opportunity_difference(yn, hard, sensitive_features=sn),
    }
    got = {
        "dp_diff": value(DemographicParityDifference(groups), p, s),
        "di_ratio": value(DisparateImpactRatio(groups), p, s),
        "eo_diff": value(EqualizedOddsDifference(groups), p, y, s),
        "eo_ratio": value(EqualizedOddsRatio(groups), p, y, s),
        "eop_diff": value(EqualOpportunityDifference(groups), p, y, s),
    }
    for name, theirs in want.items():
        assert got[name] == pytest.approx(theirs, abs=1e-6), name
        assert 0 < theirs < 1, name  # a real gap, not a degenerate 0 or 1
    # the bootstrap's point estimates (no resampling) are the same numbers
    point = bootstrap_replicates(p, y, s[:, None], ["g"], [groups], resamples=0)
    for name, theirs in want.items():
        assert float(point[f"{name}_g"][0]) == pytest.approx(theirs, abs=1e-6), name


def test_bootstrap_point_estimates_equal_every_metric():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    p, y, s = _fair_data(n=300)
    s2 = torch.stack([s, (p > 0.3).long()], dim=1)
    agreement = neighbour_agreement(x, torch.stack([p, (p >= 0.5).float()], 1), 5)
    point = bootstrap_replicates(p, y, s2, ["a", "b"], [3, 2], agreement, resamples=0)
    assert float(point["consistency"][0]) == pytest.approx(value(Consistency(5), x, p), abs=1e-6)
    assert float(point["consistency_hard"][0]) == pytest.approx(
        value(Consistency(5, hard=True), x, p), abs=1e-6
    )
    assert float(point["positive_rate"][0]) == pytest.approx(value(PositiveRate(), p), abs=1e-6)
    for a, (name, k) in enumerate([("a", 3), ("b", 2)]):
        sa = s2[:, a]
        assert float(point[f"discrimination_{name}"][0]) == pytest.approx(
            value(Discrimination(k), p, sa), abs=1e-6
        )
        assert float(point[f"delta_{name}"][0]) == pytest.approx(
            value(Delta(k), p, y, sa), abs=1e-6
        )


def _reference_replicates(p, y, s, x, k, weights):
    """The slow way: rebuild each resample's rows and run the torchmetrics metrics on them."""
    agreement = neighbour_agreement(x, torch.stack([p, (p >= 0.5).float()], 1), k)
    out = []
    for w in weights:
        idx = torch.repeat_interleave(torch.arange(len(p)), w.long())
        pb, yb, sb = p[idx], y[idx], s[idx]
        out.append(
            {
                "accuracy": float((((pb >= 0.5).long() == yb).double()).mean()),
                "consistency": float(agreement[idx, 0].mean()),
                "discrimination_g": value(Discrimination(3), pb, sb),
                "delta_g": value(Delta(3), pb, yb, sb),
                "eo_diff_g": value(EqualizedOddsDifference(3), pb, yb, sb),
                "eop_diff_g": value(EqualOpportunityDifference(3), pb, yb, sb),
                "di_ratio_g": value(DisparateImpactRatio(3), pb, sb),
                "eo_ratio_g": value(EqualizedOddsRatio(3), pb, yb, sb),
            }
        )
    return agreement, out


def test_vectorised_bootstrap_equals_resampling_rows_one_by_one():
    p, y, s = _fair_data(n=80)
    x = torch.randn(80, 2, generator=torch.Generator().manual_seed(1))
    weights = torch.cat(list(resample_weights(80, 7, seed=5, block=3)))
    assert weights.shape == (7, 80) and (weights.sum(1) == 80).all()
    agreement, want = _reference_replicates(p, y, s, x, 4, weights)
    got = bootstrap_replicates(p, y, s[:, None], ["g"], [3], agreement, resamples=7, seed=5)
    for b, row in enumerate(want):
        for key, expected in row.items():
            assert float(got[key][b]) == pytest.approx(expected, abs=1e-6), (b, key)


def test_bootstrap_is_seeded_and_its_interval_has_the_binomial_width():
    p, y, s = _fair_data(n=2000)
    first = bootstrap_replicates(p, y, s[:, None], ["g"], [3], resamples=1000, seed=0)
    again = bootstrap_replicates(p, y, s[:, None], ["g"], [3], resamples=1000, seed=0)
    other = bootstrap_replicates(p, y, s[:, None], ["g"], [3], resamples=1000, seed=1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["accuracy"], other["accuracy"])
    assert first["accuracy"].shape == (1000,)
    accuracy = float(((p >= 0.5).long() == y).double().mean())
    low, high = percentile_interval(first["accuracy"])
    assert low < accuracy < high
    # the percentile interval of a proportion is close to 2 x 1.96 standard errors
    assert high - low == pytest.approx(
        2 * 1.96 * math.sqrt(accuracy * (1 - accuracy) / 2000), rel=0.15
    )
    assert all(math.isnan(b) for b in percentile_interval(torch.full((5,), math.nan)))


def test_prediction_rows_keep_every_row_in_order():
    rows = PredictionRows()
    rows.update(
        torch.ones(2, 3),
        torch.tensor([0.1, 0.9]),
        torch.tensor([0, 1]),
        torch.tensor([[0, 1], [1, 0]]),
    )
    rows.update(torch.zeros(1, 3), torch.tensor([0.5]), torch.tensor([1]), torch.tensor([[1, 1]]))
    got = rows.compute()
    assert got["preds"].tolist() == pytest.approx([0.1, 0.9, 0.5])
    assert got["protected"].tolist() == [[0, 1], [1, 0], [1, 1]]
    assert got["features"].shape == (3, 3) and got["target"].tolist() == [0, 1, 1]


# ---- DDP: two gloo processes, each with half the rows, agree with one process -----------------


def _data():
    g = torch.Generator().manual_seed(1)
    n = 64
    x = torch.randn(n, 4, generator=g)
    p = torch.rand(n, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    s = torch.randint(0, 3, (n,), generator=g)
    return x, p, y, s


def _all_metrics(x, p, y, s):
    out = {}
    for name, metric, args in [
        ("discrimination", Discrimination(3), (p, s)),
        ("dp", DemographicParityDifference(3), (p, s)),
        ("delta", Delta(3), (p, y, s)),
        ("eo", EqualizedOddsDifference(3), (p, y, s)),
        ("eop", EqualOpportunityDifference(3), (p, y, s)),
        ("di_ratio", DisparateImpactRatio(3), (p, s)),
        ("eo_ratio", EqualizedOddsRatio(3), (p, y, s)),
        ("rate", PositiveRate(), (p,)),
        ("consistency", Consistency(k=5), (x, p)),
        ("consistency_hard", Consistency(k=5, hard=True), (x, p)),
    ]:
        half = len(p) // 2
        # two updates per process, so cat states hold lists
        metric.update(*(a[: half // 2] for a in args))
        metric.update(*(a[half // 2 :] for a in args))
        out[name] = float(metric.compute())
    cut = len(p) // 4  # two updates per process, as above
    out.update(
        _row_values([tuple(a[:cut] for a in (x, p, y, s)), tuple(a[cut:] for a in (x, p, y, s))])
    )
    return out


def _row_values(batches):
    """Consistency and bootstrap replicates from the rows PredictionRows gathered."""
    rows = PredictionRows()
    for x, p, y, s in batches:
        rows.update(x, p, y, s[:, None])
    got = rows.compute()
    replicates = bootstrap_replicates(
        got["preds"], got["target"], got["protected"], ["g"], [3], resamples=20, seed=0
    )
    return {
        "rows_consistency": float(neighbour_agreement(got["features"], got["preds"], 5).mean()),
        "rows_boot_accuracy": float(replicates["accuracy"].mean()),
        "rows_boot_eo_diff": float(replicates["eo_diff_g"].mean()),
    }


def _worker(rank, world, port, path):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    x, p, y, s = _data()
    shard = slice(rank * 32, (rank + 1) * 32)
    result = _all_metrics(x[shard], p[shard], y[shard], s[shard])
    torch.save(result, os.path.join(path, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_gives_the_one_process_values(tmp_path):
    x, p, y, s = _data()
    single = {}
    for name, metric, args in [
        ("discrimination", Discrimination(3), (p, s)),
        ("dp", DemographicParityDifference(3), (p, s)),
        ("delta", Delta(3), (p, y, s)),
        ("eo", EqualizedOddsDifference(3), (p, y, s)),
        ("eop", EqualOpportunityDifference(3), (p, y, s)),
        ("di_ratio", DisparateImpactRatio(3), (p, s)),
        ("eo_ratio", EqualizedOddsRatio(3), (p, y, s)),
        ("rate", PositiveRate(), (p,)),
        ("consistency", Consistency(k=5), (x, p)),
        ("consistency_hard", Consistency(k=5, hard=True), (x, p)),
    ]:
        single[name] = value(metric, *args)
    single.update(_row_values([(x, p, y, s)]))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, want in single.items():
            assert got[name] == pytest.approx(want, abs=1e-6), (rank, name)

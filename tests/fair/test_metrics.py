import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lit_rev.fair.metrics import (
    Consistency,
    Delta,
    DemographicParityDifference,
    Discrimination,
    EqualizedOddsDifference,
    PositiveRate,
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
        ("rate", PositiveRate(), (p,)),
        ("consistency", Consistency(k=5), (x, p)),
        ("consistency_hard", Consistency(k=5, hard=True), (x, p)),
    ]:
        half = len(p) // 2
        # two updates per process, so cat states hold lists
        metric.update(*(a[: half // 2] for a in args))
        metric.update(*(a[half // 2 :] for a in args))
        out[name] = float(metric.compute())
    return out


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
        ("rate", PositiveRate(), (p,)),
        ("consistency", Consistency(k=5), (x, p)),
        ("consistency_hard", Consistency(k=5, hard=True), (x, p)),
    ]:
        single[name] = value(metric, *args)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, want in single.items():
            assert got[name] == pytest.approx(want, abs=1e-6), (rank, name)

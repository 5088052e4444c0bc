"""benchmarks/revnet_memory.py: the RevLib model, the graph-walk byte count, the interleaving."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_rev.revnet import SavedTensorMeter, build

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "revnet_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("revnet_memory_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loss_and_grads(net, x, y):
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize(
    ("preset", "parts"),
    [
        # stage 1's two blocks as one RevLib sequence [F1, G1, F2, G2], then the strided units
        ("revnet38", ["ReversibleSequential", "CheckpointedUnit", "CheckpointedUnit"]),
        # bottlenecks: stage 1's first unit widens 32 -> 128 channels, so it is stored too
        (
            "revnet164",
            ["CheckpointedUnit", "ReversibleSequential", "CheckpointedUnit", "CheckpointedUnit"],
        ),
    ],
)
def test_revlib_body_computes_our_revnet_in_float64(bench, preset, parts):
    """RevLib's F, G half-steps and the checkpointed strided units give our loss and gradients."""
    pytest.importorskip("revlib")
    torch.manual_seed(0)
    ours = build(preset, memory_saving=True, units=[2, 1, 1]).double().train()
    torch.manual_seed(0)
    theirs = bench.revlib_revnet(preset, True, units=[2, 1, 1]).double().train()
    # the same initialisation, parameter for parameter (F then G of each block, in order)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [type(m).__name__ for m in theirs.body] == parts
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 7])
    loss, grads = _loss_and_grads(ours, x, y)
    their_loss, their_grads = _loss_and_grads(theirs, x, y)
    torch.testing.assert_close(their_loss, loss, rtol=1e-12, atol=0)
    for g, h in zip(grads, their_grads, strict=True):
        torch.testing.assert_close(h, g, rtol=1e-10, atol=1e-12)


def test_revlib_saving_mode_keeps_less_than_its_plain_mode(bench):
    pytest.importorskip("revlib")
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    kept = {}
    for saving in (True, False):
        torch.manual_seed(0)
        kept[saving] = bench.metered_step(bench.revlib_revnet("revnet38", saving, [3, 1, 1]), x, y)
    assert kept[True][1] < 0.6 * kept[False][1]


class _KeepsOnCtx(torch.autograd.Function):
    """Doubles its input; keeps a copy as a ctx attribute, outside save_for_backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.stash = [x.detach().clone()]
        return 2 * x

    @staticmethod
    def backward(ctx, dy):
        return 2 * dy


def test_kept_bytes_see_what_a_function_keeps_on_ctx(bench):
    lin = torch.nn.Linear(5, 5)
    x = torch.randn(3, 5, requires_grad=True)
    with SavedTensorMeter(lin) as meter:
        out = _KeepsOnCtx.apply(torch.tanh(lin(x))).sum()
    kept = bench.kept_for_backward_bytes(out, lin)
    # tanh saves its 3x5 float32 result, which the hooks see; the ctx copy they do not.
    assert meter.bytes == 60 + 60  # x (saved by the linear layer's mm) and tanh's result
    assert kept == meter.bytes + 60


@pytest.mark.parametrize("saving", [True, False])
def test_kept_bytes_equal_the_meter_on_our_revnet(bench, saving):
    """Ours saves everything through save_for_backward: the two counts agree exactly."""
    torch.manual_seed(0)
    net = build("revnet38", memory_saving=saving, units=[2, 1, 1])
    saved, kept = bench.metered_step(net, torch.randn(2, 3, 8, 8), torch.tensor([3, 4]))
    assert saved > 0
    assert kept == saved


def test_interleaved_alternates_the_order_and_reports_medians(bench):
    pytest.importorskip("revlib")
    pytest.importorskip("memcnn")
    calls, seconds = [], {"lit_rev": 1.0, "memcnn": 2.0, "revlib": 4.0}
    impls = ["lit_rev", "memcnn", "revlib"]

    def clock(net, x, y):
        impl = (
            "memcnn"
            if not hasattr(net, "body")
            else ("revlib" if isinstance(net.body, torch.nn.Sequential) else "lit_rev")
        )
        calls.append(impl)
        return seconds[impl] + 0.1 * len(calls)

    rows = bench.interleaved("revnet38", impls, 2, 8, 3, 1, units=[1, 1, 1], clock=clock)
    assert calls == impls + impls[::-1] + impls
    by_impl = {r["impl"]: r for r in rows}
    # calls 1-9 add 0.1 each: lit_rev 1.1/1.6/1.7, memcnn 2.2/2.5/2.8, revlib 4.3/4.4/4.9
    assert by_impl["lit_rev"]["step_s"] == pytest.approx(1.6)
    assert by_impl["memcnn"]["step_s"] == pytest.approx(2.5)
    assert by_impl["revlib"]["step_s"] == pytest.approx(4.4)
    # paired per step: median of 4.3/1.1, 4.4/1.6, 4.9/1.7
    assert by_impl["revlib"]["step_vs_lit_rev"] == pytest.approx(4.9 / 1.7)
    assert all(r["kept_mib"] > 0 for r in rows)
    # one metered step each: ours updates batch-norm statistics once, the others recompute
    # in training mode and update them again
    assert [by_impl[i]["bn_updates"] for i in impls] == [1, 2, 2]


def test_targets_compare_ours_with_the_best_other_library(bench):
    rows = [
        {"net": "revnet38", "impl": "lit_rev", "step_s": 1.0, "kept_mib": 5.0},
        {"net": "revnet38", "impl": "memcnn", "step_s": 0.9, "kept_mib": 9.0},
        {"net": "revnet38", "impl": "revlib", "step_s": 1.2, "kept_mib": 6.0},
    ]
    step, kept = bench.targets(rows)
    assert (step["best_is"], step["ratio"], step["ok"]) == ("memcnn", pytest.approx(1 / 0.9), "NO")
    assert (kept["best_is"], kept["ratio"], kept["ok"]) == ("revlib", pytest.approx(5 / 6), "yes")
    assert bench.targets(rows[:1]) == []
    # paired ratios, where present, decide the step time (here memcnn's median is lower, but
    # step for step it was 1.05x ours)
    rows[1]["step_vs_lit_rev"], rows[2]["step_vs_lit_rev"] = 1.05, 1.2
    step, _ = bench.targets(rows)
    assert (step["best_is"], step["ratio"], step["ok"]) == (
        "memcnn",
        pytest.approx(1 / 1.05),
        "yes",
    )


@pytest.mark.slow
def test_command_writes_the_interleaved_and_target_tables(bench, tmp_path):
    pytest.importorskip("revlib")
    bench.main(
        [
            "--depths",
            "38",
            "--units",
            "1",
            "1",
            "1",
            "--batch-size",
            "2",
            "--image-size",
            "8",
            "--steps",
            "1",
            "--interleaved-steps",
            "2",
            "--modes",
            "saving",
            "--impls",
            "lit_rev",
            "revlib",
            "--out",
            str(tmp_path),
        ]
    )
    isolated = json.loads((tmp_path / "revnet_memory.json").read_text())["rows"]
    assert {(r["impl"], r["net"]) for r in isolated} == {
        ("lit_rev", "resnet32"),
        ("lit_rev", "revnet38"),
        ("revlib", "revnet38"),
    }
    together = json.loads((tmp_path / "revnet_memory_interleaved.json").read_text())["rows"]
    assert [r["impl"] for r in together] == ["lit_rev", "revlib"]
    goals = json.loads((tmp_path / "revnet_memory_targets.json").read_text())["rows"]
    assert [g["quantity"] for g in goals] == ["step time", "kept for backward"]

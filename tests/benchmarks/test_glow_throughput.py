"""benchmarks/glow_throughput.py at tiny sizes: it runs, and it interleaves the two models."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "glow_throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("glow_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Recorder:
    """A trainee that records which batch it was given at which step."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def step(self, x, dims, timed):
        self.log.append((self.name, x.sum().item(), timed))

    def row(self, test_batch, steps):
        return {"model": self.name}


def test_models_train_on_the_same_batches_step_for_step_in_alternating_order():
    bench = _load()
    log = []
    loader = [(torch.full((2, 1, 4, 4), float(i)), None) for i in range(3)]
    rows = bench.train_interleaved(
        [_Recorder("a", log), _Recorder("b", log)], loader, torch.zeros(1, 1, 4, 4), 4, skip=1
    )
    assert [r["model"] for r in rows] == ["a", "b"]
    assert [name for name, _, _ in log] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    # both models see the same (dequantised) batch at each step; the loader restarts when spent
    sums = [s for _, s, _ in log]
    assert sums[0::2] == sums[1::2]
    assert [timed for _, _, timed in log] == [False, False, True, True, True, True, True, True]


def test_tiny_run_prints_both_models_and_their_ratio(capsys):
    pytest.importorskip("normflows")
    bench = _load()
    torch.set_num_threads(1)
    rows = bench.main(
        [
            "--steps",
            "7",
            "--batch-size",
            "4",
            "--levels",
            "1",
            "--depth",
            "1",
            "--width",
            "4",
            "--max-test",
            "8",
            "--warmup",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert [r["model"] for r in rows] == ["lit_rev Glow", "normflows Glow"]
    assert all(
        r["images_per_s"] > 0 and torch.isfinite(torch.tensor(r["heldout_bpd"])) for r in rows
    )
    assert "throughput ratio lit_rev / normflows" in out and "1 torch thread(s)" in out


def test_compile_trains_lit_revs_glow_compiled_and_scores_it_eagerly(capsys, monkeypatch):
    """``--compile`` hands lit_rev's ``log_prob`` to torch.compile for the training steps only
    (a stand-in records what reaches the compiled function; the held-out batch must not)."""
    bench = _load()
    compiled, batch_sizes = [], []

    def recording_compile(fn, **kwargs):
        compiled.append(fn)

        def run(x):
            batch_sizes.append(len(x))
            return fn(x)

        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    torch.set_num_threads(1)
    tiny = ["--steps", "3", "--batch-size", "4", "--levels", "1", "--depth", "1", "--width", "4"]
    rows = bench.main([*tiny, "--max-test", "8", "--warmup", "2", "--no-normflows", "--compile"])
    assert [r["model"] for r in rows] == ["lit_rev Glow (compiled)"]
    assert len(compiled) == 1 and compiled[0].__name__ == "log_prob"
    assert batch_sizes == [4, 4, 4]
    assert rows[0]["first_step_s"] > 0 and torch.isfinite(torch.tensor(rows[0]["heldout_bpd"]))

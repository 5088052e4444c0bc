"""Training-step speed of ``torch.compile`` (:class:`lit_rev.callbacks.CompileNetwork`) on CPU.

Two copies of the same model, one eager and one compiled by ``CompileNetwork`` exactly as a
``trainer.callbacks`` entry would compile it, run **interleaved step for step in one process**
(the order alternating each step) on the same batch, so a shared CPU's changing load hits both
alike. A step is forward, backward and an optimiser step. The compile time (the first compiled
steps) is reported apart and excluded from the medians.

Models: the quickstart's Glow (1x28x28, 2 levels x 8 steps, width 64, batch 64) and RevNet-38
(CIFAR 32x32, memory-saving, batch 32), plus RevNet-38 in plain mode.

    python benchmarks/compile_speedup.py                       # 1 thread, 20 timed steps
    python benchmarks/compile_speedup.py --threads 2 --models glow --steps 10
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from lit_rev.callbacks import CompileNetwork
from lit_rev.density import DensityModule
from lit_rev.density.glow import Glow
from lit_rev.revnet import ImageClassifier
from lit_rev.revnet.networks import revnet38

MODELS = ("glow", "revnet38", "revnet38_plain")


def build(name: str, batch_size: int | None):
    """``(LightningModule, loss function of the module, batch)`` of one benchmark model."""
    if name == "glow":
        module = DensityModule(
            Glow(in_channels=1, image_size=28, levels=2, steps=8, hidden_channels=64)
        )
        k = torch.randint(0, 256, (batch_size or 64, 1, 28, 28))
        return module, lambda m: m.scores(k, noise=False)["bpd"].mean()
    module = ImageClassifier(revnet38(memory_saving=name == "revnet38"))
    n = batch_size or 32
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (n,))
    return module, lambda m: F.cross_entropy(m(x), y)


def step(module, loss_fn, optimizer) -> float:
    """One forward, backward and optimiser step; its wall time in seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(module)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def measure(name: str, steps: int, warmup: int, batch_size: int | None) -> dict:
    """Interleaved eager and compiled steps of one model; medians, speedup, loss agreement."""
    torch.manual_seed(0)
    eager, loss_fn = build(name, batch_size)
    compiled = copy.deepcopy(eager)
    with torch.no_grad():
        first_eager = float(loss_fn(eager))
    callback = CompileNetwork()
    callback.compile(compiled)
    start = time.perf_counter()
    with torch.no_grad():
        first_compiled = float(loss_fn(compiled))
    opts = [torch.optim.SGD(m.parameters(), lr=1e-4) for m in (eager, compiled)]
    for _ in range(warmup):  # compiles the training graphs (and warms the eager one up)
        step(compiled, loss_fn, opts[1])
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        step(eager, loss_fn, opts[0])
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(steps):
        order = ((0, "eager"), (1, "compiled")) if i % 2 == 0 else ((1, "compiled"), (0, "eager"))
        for index, key in order:
            times[key].append(step((eager, compiled)[index], loss_fn, opts[index]))
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {
        "model": name,
        "eager_step_s": eager_s,
        "compiled_step_s": compiled_s,
        "speedup": eager_s / compiled_s,
        "compile_s": compile_s,
        "loss_rel_diff": abs(first_compiled - first_eager) / abs(first_eager),
        "compiled_parts": len(callback.compiled),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print one line per model and, optionally, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compiling)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} interleaved steps")
    for name in args.models:
        row = measure(name, args.steps, args.warmup, args.batch_size)
        rows.append(row)
        print(
            f"{name:15s} eager {row['eager_step_s'] * 1e3:8.1f} ms  compiled "
            f"{row['compiled_step_s'] * 1e3:8.1f} ms  speedup {row['speedup']:.2f}x  "
            f"(compile {row['compile_s']:.0f} s, loss rel. diff {row['loss_rel_diff']:.1e})",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()

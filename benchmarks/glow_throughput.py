"""Training throughput and bits/dim of lit_rev's Glow against normflows' Glow of the same size.

Same data (28x28 gray natural-image patches shipped with lit_rev), same batches, optimiser
(Adamax, linear warm-up), levels, steps and width. The two models train **interleaved step for
step in one process** (the order alternating each step), so a change in machine load hits both
alike and the ratio stays meaningful on a shared machine.

    pip install normflows          # the reference (not a lit_rev dependency)
    python benchmarks/glow_throughput.py --steps 200 --threads 1
    python benchmarks/glow_throughput.py --steps 200 --threads 2 --compile

Prints images/s and held-out bits/dim for each, and their ratio. Without normflows only
lit_rev's Glow is measured. ``--compile`` trains lit_rev's Glow through ``torch.compile``, as
the ``CompileNetwork`` callback does; ``--compile-normflows`` does the same to normflows'. The
compilation happens in the first, untimed steps; its time is printed. Held-out bits/dim are
always computed by the eager model (the same parameters), so the test batch compiles nothing.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field

import torch

from lit_rev.data import ImageDataModule, NaturalPatches
from lit_rev.density import Glow
from lit_rev.report import format_table


def normflows_glow(channels: int, size: int, levels: int, steps: int, hidden: int):
    """normflows' multiscale Glow (its documented recipe) with the same levels/steps/width."""
    import normflows as nf

    q0, merges, flows = [], [], []
    for i in range(levels):
        level = [
            nf.flows.GlowBlock(
                channels * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True
            )
            for _ in range(steps)
        ]
        flows.append([*level, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            shape = (
                channels * 2 ** (levels - i),
                size // 2 ** (levels - i),
                size // 2 ** (levels - i),
            )
        else:
            shape = (channels * 2 ** (levels + 1), size // 2**levels, size // 2**levels)
        q0.append(nf.distributions.GlowBase(shape))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    return model, lambda x: model.log_prob(x, None)


def continuous(k: torch.Tensor, noise: bool) -> torch.Tensor:
    u = (
        torch.rand_like(k, dtype=torch.float32)
        if noise
        else torch.full_like(k, 0.5, dtype=torch.float32)
    )
    return (k.float() + u) / 256 - 0.5


@dataclass
class Trainee:
    """One model under training: its log-prob, optimiser, and the time it spent in its steps."""

    name: str
    log_prob: object
    params: list
    lr: float
    warmup: int
    eval_log_prob: object = None  # for held-out bits/dim; ``log_prob`` when None
    seen: int = 0
    timed: float = 0.0
    first_step_s: float = 0.0  # includes compilation when ``log_prob`` is compiled
    opt: torch.optim.Optimizer = field(init=False)
    sched: object = field(init=False)

    def __post_init__(self):
        self.opt = torch.optim.Adamax(self.params, lr=self.lr)
        warmup = self.warmup
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup)
        )

    def step(self, x: torch.Tensor, dims: int, timed: bool) -> None:
        start = time.perf_counter()
        loss = -self.log_prob(x).mean() / (dims * math.log(2)) + 8
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 50.0)
        self.opt.step()
        self.sched.step()
        if not self.first_step_s:
            self.first_step_s = time.perf_counter() - start
        if timed:
            self.timed += time.perf_counter() - start
            self.seen += len(x)

    def row(self, test_batch: torch.Tensor, steps: int) -> dict:
        dims = test_batch[0].numel()
        log_prob = self.eval_log_prob or self.log_prob
        with torch.no_grad():
            bpd = (
                (-log_prob(continuous(test_batch, noise=False)) / (dims * math.log(2)) + 8)
                .mean()
                .item()
            )
        return {
            "model": self.name,
            "params": sum(p.numel() for p in self.params),
            "images_per_s": self.seen / self.timed if self.timed else float("nan"),
            "heldout_bpd": bpd,
            "steps": steps,
            "first_step_s": self.first_step_s,
        }


def train_interleaved(trainees, loader, test_batch, steps: int, skip: int = 5) -> list[dict]:
    """Train every trainee on the same batches, one step each in turn, the order alternating.

    The first ``skip`` steps (ActNorm init, allocator warm-up) are not timed. Each model gets
    the same dequantisation noise, so the two runs differ only in the model.
    """
    batches = iter(loader)
    dims = test_batch[0].numel()
    for step in range(steps):
        try:
            k, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            k, _ = next(batches)
        x = continuous(k, noise=True)
        order = trainees if step % 2 == 0 else trainees[::-1]
        for trainee in order:
            trainee.step(x, dims, timed=step >= skip)
    return [t.row(test_batch, steps) for t in trainees]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--depth", type=int, default=8, help="flow steps per level")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-test", type=int, default=512, help="held-out patches for bits/dim")
    parser.add_argument("--no-normflows", action="store_true", help="measure lit_rev only")
    parser.add_argument(
        "--compile", action="store_true", help="train lit_rev's Glow through torch.compile"
    )
    parser.add_argument(
        "--compile-normflows", action="store_true", help="train normflows' through torch.compile"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dm = ImageDataModule(
        NaturalPatches(patch_size=28, stride=7), batch_size=args.batch_size, max_test=args.max_test
    )
    dm.setup("fit")
    dm.setup("test")
    test_set = dm.test_sets[0]
    test_batch = torch.stack([test_set[i][0] for i in range(len(test_set))])

    torch.manual_seed(0)
    ours = Glow(1, 28, levels=args.levels, steps=args.depth, hidden_channels=args.width)
    trainees = [
        Trainee(
            "lit_rev Glow" + (" (compiled)" if args.compile else ""),
            torch.compile(ours.log_prob) if args.compile else ours.log_prob,
            list(ours.parameters()),
            args.lr,
            args.warmup,
            eval_log_prob=ours.log_prob,
        )
    ]
    if not args.no_normflows:
        try:
            torch.manual_seed(0)
            ref, ref_log_prob = normflows_glow(1, 28, args.levels, args.depth, args.width)
            trainees.append(
                Trainee(
                    "normflows Glow" + (" (compiled)" if args.compile_normflows else ""),
                    torch.compile(ref_log_prob) if args.compile_normflows else ref_log_prob,
                    list(ref.parameters()),
                    args.lr,
                    args.warmup,
                    eval_log_prob=ref_log_prob,
                )
            )
        except ImportError:
            print("normflows is not installed (pip install normflows): measuring lit_rev only")
    loader = torch.utils.data.DataLoader(
        dm.train_set,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    rows = train_interleaved(trainees, loader, test_batch, args.steps)
    print(
        f"Glow {args.levels} levels x {args.depth} steps, width {args.width}, "
        f"batch {args.batch_size}, {args.steps} steps interleaved, {args.threads} torch thread(s), "
        "28x28 gray natural patches"
    )
    print(format_table(rows))
    if len(rows) == 2:
        ratio = rows[0]["images_per_s"] / rows[1]["images_per_s"]
        print(
            f"throughput ratio lit_rev / normflows: {ratio:.2f}x; "
            f"held-out bits/dim {rows[0]['heldout_bpd']:.3f} vs {rows[1]['heldout_bpd']:.3f}"
        )
    return rows


if __name__ == "__main__":
    main()

"""Training throughput and bits/dim of lit_rev's Glow against normflows' Glow of the same size.

Same data (28x28 gray natural-image patches shipped with lit_rev), same batch, optimiser
(Adamax, linear warm-up), levels, steps and width; one training loop for both models.

    pip install normflows          # the reference (not a lit_rev dependency)
    python benchmarks/glow_throughput.py --steps 200 --threads 1

Prints images/s and held-out bits/dim for each, and their ratio. Without normflows only
lit_rev's Glow is measured.
"""

from __future__ import annotations

import argparse
import math
import time

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


def run(name, log_prob, params, loader, test_batch, steps, warmup, lr):
    opt = torch.optim.Adamax(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    batches = iter(loader)
    dims = test_batch[0].numel()
    seen, timed = 0, 0.0
    for step in range(steps):
        try:
            k, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            k, _ = next(batches)
        start = time.perf_counter()
        loss = -log_prob(continuous(k, noise=True)).mean() / (dims * math.log(2)) + 8
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 50.0)
        opt.step()
        sched.step()
        if step >= 5:  # skip the first steps (ActNorm init, allocator warm-up)
            timed += time.perf_counter() - start
            seen += len(k)
    with torch.no_grad():
        bpd = (
            (-log_prob(continuous(test_batch, noise=False)) / (dims * math.log(2)) + 8)
            .mean()
            .item()
        )
    n_params = sum(p.numel() for p in params)
    return {
        "model": name,
        "params": n_params,
        "images_per_s": seen / timed,
        "heldout_bpd": bpd,
        "steps": steps,
    }


def main():
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dm = ImageDataModule(
        NaturalPatches(patch_size=28, stride=7), batch_size=args.batch_size, max_test=512
    )
    dm.setup("fit")
    dm.setup("test")
    test_batch = torch.stack([dm.test_sets[0][i][0] for i in range(len(dm.test_sets[0]))])

    rows = []
    torch.manual_seed(0)
    ours = Glow(1, 28, levels=args.levels, steps=args.depth, hidden_channels=args.width)
    loader = torch.utils.data.DataLoader(
        dm.train_set,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    rows.append(
        run(
            "lit_rev Glow",
            ours.log_prob,
            list(ours.parameters()),
            loader,
            test_batch,
            args.steps,
            args.warmup,
            args.lr,
        )
    )
    try:
        torch.manual_seed(0)
        ref, ref_log_prob = normflows_glow(1, 28, args.levels, args.depth, args.width)
        loader = torch.utils.data.DataLoader(
            dm.train_set,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(0),
        )
        rows.append(
            run(
                "normflows Glow",
                ref_log_prob,
                list(ref.parameters()),
                loader,
                test_batch,
                args.steps,
                args.warmup,
                args.lr,
            )
        )
    except ImportError:
        print("normflows is not installed (pip install normflows): measuring lit_rev only")
    print(
        f"Glow {args.levels} levels x {args.depth} steps, width {args.width}, "
        f"batch {args.batch_size}, {args.steps} steps, {args.threads} torch thread(s), "
        "28x28 gray natural patches"
    )
    print(format_table(rows))
    if len(rows) == 2:
        ratio = rows[0]["images_per_s"] / rows[1]["images_per_s"]
        print(
            f"throughput ratio lit_rev / normflows: {ratio:.2f}x; "
            f"held-out bits/dim {rows[0]['heldout_bpd']:.3f} vs {rows[1]['heldout_bpd']:.3f}"
        )


if __name__ == "__main__":
    main()

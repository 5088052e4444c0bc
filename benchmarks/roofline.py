"""How close each model's training step comes to what this CPU can do (a roofline in one number).

1. The machine's sustained float32 GFLOP/s on 1 thread and on all threads: a large matmul and
   a large 3x3 convolution (channels-last, as oneDNN runs it fastest), median of repeats.
2. The FLOPs of one training step (forward + backward) of each model, counted by
   ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; elementwise work is
   not counted, which is why a model dominated by it scores low), the step timed (median), and
   the achieved GFLOP/s as a fraction of the convolution peak on the same number of threads,
   that peak re-measured alongside the model (one convolution between steps), so that on a
   shared machine both numbers see the same load.

    python benchmarks/roofline.py                      # peaks on 1 and all threads, models on 1
    python benchmarks/roofline.py --model-threads 1 2

Models: Glow at the quickstart's size (2 levels x 8 steps, width 64, 28x28x1, batch 64) and at
the paper's CIFAR-10 size (3 levels x 32 steps, width 512, batch 4: a small batch keeps it
quick), PixelCNN++ at its quick config's size (28x28x1, 32 filters, batch 64), RevNet-38 (plain
and memory-saving) and ResNet-32 (CIFAR 32x32x3, batch 64). RevNet-38's FLOPs are counted on the
plain network: the memory-saving backward recomputes each block's forward, extra work that is
not part of the model's FLOPs, so its fraction is of the same useful FLOPs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lit_rev.density import Glow, PixelCNNPP
from lit_rev.report import format_table
from lit_rev.revnet.networks import resnet32, revnet38


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_gflops(matmul_size: int, conv_shape: tuple[int, int, int], repeats: int) -> dict:
    """Sustained GFLOP/s of a ``matmul_size``-square matmul and a 3x3 convolution.

    ``conv_shape`` is ``(batch, channels, side)``: ``channels`` in and out, same padding.
    """
    a = torch.randn(matmul_size, matmul_size)
    b = torch.randn(matmul_size, matmul_size)
    matmul_s = _median_seconds(lambda: a @ b, repeats)
    n, c, s = conv_shape
    x = torch.randn(n, c, s, s).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3).contiguous(memory_format=torch.channels_last)
    conv_s = _median_seconds(lambda: F.conv2d(x, w, padding=1), repeats)
    return {
        "matmul": 2 * matmul_size**3 / matmul_s / 1e9,
        "conv3x3": 2 * n * c * c * 9 * s * s / conv_s / 1e9,
    }


def _glow_step(model, batch, size, channels):
    x = torch.rand(batch, channels, size, size) - 0.5
    return lambda: -model.log_prob(x).mean()


def _pixelcnn_step(model, batch, size):
    k = torch.randint(0, 256, (batch, 1, size, size))
    return lambda: -model.log_prob(k).mean()


def _classifier_step(model, batch):
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    return lambda: F.cross_entropy(model(x), y)


def models(tiny: bool) -> list[tuple[str, int, Callable[[], tuple[torch.nn.Module, Callable]]]]:
    """``(name, batch, build)``; ``build() -> (model, loss_fn)``. ``tiny``: minute sizes (tests)."""
    if tiny:
        return [
            ("Glow tiny", 4, lambda: _glow(1, 8, 2, 2, 8, 4)),
            ("PixelCNN++ tiny", 2, lambda: _pixelcnn(8, 8, 2)),
            ("RevNet-38 plain", 2, lambda: _classifier(revnet38(memory_saving=False), 2)),
            ("RevNet-38 memory-saving", 2, lambda: _classifier(revnet38(memory_saving=True), 2)),
        ]
    return [
        ("Glow quickstart", 64, lambda: _glow(1, 28, 2, 8, 64, 64)),
        ("Glow CIFAR paper", 4, lambda: _glow(3, 32, 3, 32, 512, 4)),
        ("PixelCNN++ quick", 64, lambda: _pixelcnn(28, 32, 64)),
        ("RevNet-38 plain", 64, lambda: _classifier(revnet38(memory_saving=False), 64)),
        ("RevNet-38 memory-saving", 64, lambda: _classifier(revnet38(memory_saving=True), 64)),
        ("ResNet-32", 64, lambda: _classifier(resnet32(), 64)),
    ]


def _glow(channels, size, levels, steps, width, batch):
    model = Glow(channels, size, levels=levels, steps=steps, hidden_channels=width)
    return model, _glow_step(model, batch, size, channels)


def _pixelcnn(size, filters, batch):
    model = PixelCNNPP(
        in_channels=1, image_size=size, resnets_per_scale=1, filters=filters, num_mixtures=5,
        scales=3 if size >= 16 else 2, dropout=0.0,
    )  # fmt: skip
    return model, _pixelcnn_step(model, batch, size)


def _classifier(model, batch):
    return model, _classifier_step(model, batch)


def count_step_flops(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one forward + backward, by ``FlopCounterMode``.

    A memory-saving network is counted with its memory saving switched off (the same
    arithmetic without the recomputation), which also sidesteps a ``FlopCounterMode`` failure
    inside the memory-saving forward.
    """
    saving = getattr(model, "memory_saving", None)
    if saving:
        model.memory_saving = False
    try:
        with FlopCounterMode(display=False) as counter:
            loss_fn().backward()
    finally:
        if saving:
            model.memory_saving = saving
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_step(
    model, loss_fn, repeats: int, conv_shape: tuple[int, int, int]
) -> tuple[float, float]:
    """Median seconds of one training step (forward, backward, Adam update), and the conv peak.

    Each step alternates with one run of the peak convolution, so both see the same machine
    load: on a shared machine their ratio (the fraction of peak) holds even when both slow down.
    Returns ``(step seconds, conv GFLOP/s measured alongside)``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    n, c, s = conv_shape
    x = torch.randn(n, c, s, s).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 3, 3).contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    for _ in range(2):
        step()
    step_times, conv_times = [], []
    for _ in range(repeats):
        conv_times.append(_median_seconds(lambda: F.conv2d(x, w, padding=1), 1, warmup=0))
        step_times.append(_median_seconds(step, 1, warmup=0))
    conv_gflops = 2 * n * c * c * 9 * s * s / statistics.median(conv_times) / 1e9
    return statistics.median(step_times), conv_gflops


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    all_threads = os.cpu_count() or 1
    parser.add_argument("--peak-threads", type=int, nargs="+", default=sorted({1, all_threads}))
    parser.add_argument("--model-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--conv-shape", type=int, nargs=3, default=[8, 256, 32])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--tiny", action="store_true", help="minute sizes: checks the script runs")
    parser.add_argument(
        "--only", nargs="+", help="only the models whose name contains one of these"
    )
    args = parser.parse_args(argv)

    peaks = {}
    for threads in sorted(set(args.peak_threads) | set(args.model_threads)):
        torch.set_num_threads(threads)
        peaks[threads] = peak_gflops(args.matmul_size, tuple(args.conv_shape), args.repeats)
    print(f"peak float32 GFLOP/s (matmul {args.matmul_size}^2, conv3x3 {args.conv_shape}):")
    print(
        format_table(
            [
                {"threads": t, "matmul": p["matmul"], "conv3x3": p["conv3x3"]}
                for t, p in peaks.items()
            ]
        )
    )
    rows = []
    for name, batch, build in models(args.tiny):
        if args.only and not any(key in name for key in args.only):
            continue
        torch.manual_seed(0)
        model, loss_fn = build()
        model.train()
        torch.set_num_threads(1)
        gflop = count_step_flops(model, loss_fn) / 1e9
        for threads in args.model_threads:
            torch.set_num_threads(threads)
            seconds, conv_peak = time_step(model, loss_fn, args.repeats, tuple(args.conv_shape))
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "threads": threads,
                    "GFLOP/step": gflop,
                    "s/step": seconds,
                    "GFLOP/s": gflop / seconds,
                    "conv peak alongside": conv_peak,
                    "of conv peak": gflop / seconds / conv_peak,
                }
            )
        print(format_table(rows[-len(args.model_threads) :]), flush=True)
    print("training steps (forward + backward + Adam), FLOPs by FlopCounterMode:")
    print(format_table(rows))
    return {"peaks": peaks, "models": rows}


if __name__ == "__main__":
    main()

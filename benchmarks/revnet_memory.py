"""Activation memory and step time of RevNets against ResNets, with and without memory saving.

For ResNet-32/110/164 and RevNet-38/110/164 at batch 128, 32x32 inputs (CPU, or the GPU when
present), in memory-saving and plain mode, one fresh process per measurement:

* ``saved_mib``: bytes autograd keeps for the backward (``saved_tensors_hooks``, each storage
  once, parameters excluded);
* ``peak_mib``: peak RSS growth over the steps (CUDA: peak allocated memory);
* ``step_s``: median forward+backward time.

For a ResNet, "saving" means per-unit recomputation (checkpointing). If ``memcnn`` imports, its
RevNets are measured the same way. Prints the table and the issue's target ratios, writes
JSON/CSV/Markdown and a memory-vs-depth plot, and a float32 reconstruction-error table.

    python benchmarks/revnet_memory.py                         # batch 128, 1 thread
    python benchmarks/revnet_memory.py --threads 2 --depths 38 110 --batch-size 32
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_rev.report import format_table, save_figure, write_report
from lit_rev.revnet import (
    ARCHITECTURES,
    ReversibleBlock,
    ReversibleSequence,
    build,
    residual_function,
)
from lit_rev.revnet.memory import (
    MIB,
    SavedTensorMeter,
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
)

PAIRS = {
    38: ("resnet32", "revnet38"),
    110: ("resnet110", "revnet110"),
    164: ("resnet164", "revnet164"),
}

# memcnn 1.5.2 on this machine (torch 2.14.1, 2 threads, batch 32), from issue 5.
MEMCNN_REFERENCE = {
    "saved_mib_batch32": {"revnet38": 30.8, "revnet110": 31.4, "revnet164": 138.5},
    "saved_mib_batch32_plain": {
        "revnet38": 97.8,
        "revnet110": 267.5,
        "revnet164": 810.6,
        "resnet32": 75.9,
        "resnet110": 258.0,
        "resnet164": 783.6,
    },
    "step_ratio_batch64": {"revnet38": 1.35, "revnet110": 2.05, "revnet164": 1.81},
}


def depth_of(name: str) -> int:
    return int("".join(c for c in name if c.isdigit()))


def memcnn_revnet(name: str, saving: bool):
    """memcnn's RevNet at the paper's shape; its first wrapper keeps its input (see issue 5)."""
    from memcnn.models.resnet import ResNet, RevBasicBlock, RevBottleneck
    from memcnn.models.revop import InvertibleModuleWrapper

    arch = ARCHITECTURES[name]
    block = RevBottleneck if arch.bottleneck else RevBasicBlock
    net = ResNet(
        block,
        list(arch.units),
        num_classes=10,
        channels_per_layer=list(arch.channels),
        strides=[1, 1, 2, 2],
        init_max_pool=False,
        init_kernel_size=3,
        batch_norm_fix=False,
    )
    wrappers = [m for m in net.modules() if isinstance(m, InvertibleModuleWrapper)]
    for w in wrappers:
        w.disable = not saving
    # Its default frees the stem ReLU's output, which autograd saved: torch 2.x then raises
    # "output 0 of ReluBackward0 is at version 1". Keeping that one input avoids it.
    wrappers[0].keep_input = True
    return net


def measure(
    impl: str, name: str, saving: bool, batch: int, size: int, steps: int, threads: int
) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    net = (
        (memcnn_revnet(name, saving) if impl == "memcnn" else build(name, memory_saving=saving))
        .to(device)
        .train()
    )
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    gc.collect()
    rss0 = current_rss_bytes()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
    times, saved = [], 0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        start = time.perf_counter()
        if step == 0:
            with SavedTensorMeter(net) as meter:
                loss = F.cross_entropy(net(x), y)
            saved = meter.bytes
        else:
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        net.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del loss
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else (peak_rss_bytes() - rss0)
    return {
        "impl": impl,
        "net": name,
        "depth": depth_of(name),
        "mode": "saving" if saving else "plain",
        "saved_mib": saved / MIB,
        "peak_mib": peak / MIB,
        "step_s": statistics.median(times[1:]),
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def run_isolated(args, impl: str, name: str, saving: bool) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        f"{impl}:{name}:{int(saving)}",
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        mode = "saving" if saving else "plain"
        last_line = done.stderr.strip().splitlines()[-1:]
        print(f"  {impl} {name} {mode} failed: {last_line}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def reconstruction_errors(
    dtype: torch.dtype, depths=(1, 10, 25, 50, 100), seed: int = 0
) -> dict[int, float]:
    """Relative error of a 100-block reversible stack's input reconstructed through k inverses."""
    torch.manual_seed(seed)
    seq = ReversibleSequence(
        [ReversibleBlock(residual_function(8, 8), residual_function(8, 8)) for _ in range(100)]
    )
    seq = seq.to(dtype).train()
    x = torch.randn(16, 16, 8, 8, dtype=dtype)
    with torch.no_grad():
        inputs = [x]
        for block in seq.blocks:
            inputs.append(block(inputs[-1]))
        z, errors = inputs[-1], {}
        for k in range(1, 101):
            z = seq.blocks[100 - k].inverse(z)
            if k in depths:
                errors[k] = ((z - inputs[100 - k]).norm() / inputs[100 - k].norm()).item()
    return errors


def ratios(rows: list[dict]) -> list[dict]:
    get = {(r["impl"], r["net"], r["mode"]): r for r in rows}
    out = []

    def add(label, num, den, key, target):
        if num in get and den in get and get[den][key] > 0:
            value = get[num][key] / get[den][key]
            out.append(
                {
                    "ratio": label,
                    "value": value,
                    "target": target,
                    "ok": "yes" if value <= target else "NO",
                }
            )

    for impl in ("lit_rev", "memcnn"):
        add(
            f"{impl}: saved RevNet-110 / RevNet-38",
            (impl, "revnet110", "saving"),
            (impl, "revnet38", "saving"),
            "saved_mib",
            1.10,
        )
        add(
            f"{impl}: saved RevNet-110 / ResNet-110",
            (impl, "revnet110", "saving"),
            ("lit_rev", "resnet110", "plain"),
            "saved_mib",
            0.12,
        )
        for name in ("revnet38", "revnet110", "revnet164"):
            add(
                f"{impl}: step time saving / plain, {name}",
                (impl, name, "saving"),
                (impl, name, "plain"),
                "step_s",
                1.35,
            )
    return out


def plot(rows: list[dict]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list] = {}
    for r in rows:
        series.setdefault(
            f"{r['impl']} {'RevNet' if r['net'].startswith('revnet') else 'ResNet'} {r['mode']}", []
        ).append(r)
    for label, rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["depth"])
        style = "-o" if "saving" in label else "--s"
        axes[0].plot([r["depth"] for r in rs], [r["saved_mib"] for r in rs], style, label=label)
        axes[1].plot([r["depth"] for r in rs], [r["step_s"] for r in rs], style, label=label)
    axes[0].set(xlabel="depth", ylabel="activation memory saved for backward (MiB)", yscale="log")
    axes[1].set(xlabel="depth", ylabel="step time (s)")
    axes[0].legend(fontsize=7)
    fig.suptitle("RevNet vs ResNet: memory against depth")
    return fig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[38, 110, 164],
        choices=sorted(PAIRS),
        help="38 = ResNet-32 and RevNet-38; 110; 164",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (timings are noisy on a shared CPU)"
    )
    parser.add_argument("--out", default="logs/revnet_memory")
    parser.add_argument("--no-memcnn", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        impl, name, saving = args.worker.split(":")
        print(
            json.dumps(
                measure(
                    impl,
                    name,
                    saving == "1",
                    args.batch_size,
                    args.image_size,
                    args.steps,
                    args.threads,
                )
            )
        )
        return

    try:
        import memcnn  # noqa: F401

        impls = ["lit_rev"] if args.no_memcnn else ["lit_rev", "memcnn"]
    except ImportError:
        impls = ["lit_rev"]
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU, {args.threads} thread(s)"
    )
    size = f"{args.image_size}x{args.image_size}"
    print(f"batch {args.batch_size}, {size}, {device}, torch {torch.__version__}")
    rows = []
    for depth in args.depths:
        for name in PAIRS[depth]:
            for impl in impls:
                if impl == "memcnn" and not name.startswith("revnet"):
                    continue
                for saving in (True, False):
                    row = run_isolated(args, impl, name, saving)
                    if row is not None:
                        print(
                            f"  {impl:8s} {name:10s} {row['mode']:6s} "
                            f"saved {row['saved_mib']:8.1f} MiB  "
                            f"peak {row['peak_mib']:8.1f} MiB  step {row['step_s']:.3f} s",
                            flush=True,
                        )
                        rows.append(row)
    print()
    print(format_table(rows, digits=3))
    checks = ratios(rows)
    print()
    print(format_table(checks, digits=3))
    errors = {
        str(dtype).replace("torch.", ""): reconstruction_errors(dtype)
        for dtype in (torch.float32, torch.float64)
    }
    error_rows = [
        {"blocks_inverted": k, **{d: e[k] for d, e in errors.items()}} for k in errors["float32"]
    ]
    print()
    print(
        "relative reconstruction error of a 100-block reversible stack (16 channels, 8x8, batch 16)"
    )
    print(
        format_table(
            [
                {k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in r.items()}
                for r in error_rows
            ]
        )
    )
    meta = {
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "device": device,
        "threads": args.threads,
        "torch": torch.__version__,
        "memcnn_reference_issue5": MEMCNN_REFERENCE,
    }
    out = Path(args.out)
    write_report(rows, out, "revnet_memory", meta)
    write_report(checks, out, "revnet_memory_ratios", meta)
    write_report(error_rows, out, "revnet_reconstruction_error", meta)
    print(f"\nwrote {save_figure(plot(rows), out, 'revnet_memory')} and tables in {out}/")


if __name__ == "__main__":
    main()

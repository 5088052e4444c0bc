"""Activation memory and step time of RevNets against ResNets, memcnn and RevLib.

For ResNet-32/110/164 and RevNet-38/110/164 at batch 128, 32x32 inputs (CPU, or the GPU when
present), in memory-saving and plain mode, one fresh process per measurement:

* ``saved_mib``: bytes autograd keeps for the backward (``saved_tensors_hooks``, each storage
  once, parameters excluded);
* ``kept_mib``: the same found by walking the autograd graph after the forward, which also
  sees tensors a custom Function keeps as attributes of its ``ctx`` rather than through
  ``save_for_backward`` (memcnn keeps its inputs and outputs that way, RevLib its random
  states), so it is the fairer number across libraries;
* ``peak_mib``: peak RSS growth over the steps (CUDA: peak allocated memory);
* ``step_s``: median forward+backward time.

For a ResNet, "saving" means per-unit recomputation (checkpointing). If ``memcnn`` imports, its
own RevNets are measured the same way. If ``revlib`` imports, the same RevNet (our weights,
our F and G) is run with RevLib's ``ReversibleSequential`` (``MemoryModes.autograd_function``)
for each run of reversible blocks; RevLib has no non-reversible unit, so each stage's strided
unit is wrapped in ``torch.utils.checkpoint`` (re-entrant: it keeps only the unit's input, as
ours does).

Then, per depth, the memory-saving RevNets of every library run **interleaved step for step in
one process** on the same batch (the order alternating each step), so that a shared CPU's
changing load falls on all of them alike; the targets (ours <= the faster and the smaller of
memcnn and RevLib) are read from those interleaved medians and from ``kept_mib``. Peak RSS is
per process and only grows, so it can only come from the isolated runs.

    python benchmarks/revnet_memory.py                         # batch 128, 1 thread
    python benchmarks/revnet_memory.py --threads 1 --depths 38 110 --batch-size 32 \
        --modes saving --interleaved-steps 5
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lit_rev.report import format_table, save_figure, write_report
from lit_rev.revnet import ReversibleBlock, ReversibleSequence, build
from lit_rev.revnet.blocks import residual_function
from lit_rev.revnet.memory import (
    MIB,
    SavedTensorMeter,
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
)
from lit_rev.revnet.networks import ARCHITECTURES

PAIRS = {
    38: ("resnet32", "revnet38"),
    110: ("resnet110", "revnet110"),
    164: ("resnet164", "revnet164"),
}

# The libraries compared; memcnn and RevLib only where they import (the "bench" extra).
IMPLEMENTATIONS = ("lit_rev", "memcnn", "revlib")

# memcnn 1.5.2's measured MiB saved for the backward and step-time ratios (torch 2.14.1, 2 threads),
# written into the JSON beside the live runs for comparison where memcnn is not installed.
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


def installed(impl: str) -> bool:
    """Whether ``impl``'s library imports here (lit_rev always does)."""
    return impl == "lit_rev" or importlib.util.find_spec(impl) is not None


def memcnn_revnet(name: str, saving: bool, units: list[int] | None = None):
    """memcnn's RevNet at the paper's shape; its first wrapper keeps its input."""
    from memcnn.models.resnet import ResNet, RevBasicBlock, RevBottleneck
    from memcnn.models.revop import InvertibleModuleWrapper

    arch = ARCHITECTURES[name]
    block = RevBottleneck if arch.bottleneck else RevBasicBlock
    net = ResNet(
        block,
        list(units or arch.units),
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


class CheckpointedUnit(nn.Module):
    """A non-reversible unit that keeps only its input for the backward (re-entrant checkpoint).

    The re-entrant variant saves that input with ``save_for_backward``, so the saved-tensor
    hooks count it; the non-reentrant one would hide it behind hooks of its own.
    """

    def __init__(self, unit: nn.Module, saving: bool):
        super().__init__()
        self.unit = unit
        self.saving = saving

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.saving and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self.unit, x, use_reentrant=True)
        return self.unit(x)


def revlib_body(body: ReversibleSequence, saving: bool) -> nn.Sequential:
    """Our RevNet body re-expressed with RevLib, sharing its modules (so its weights).

    RevLib's ``ReversibleSequential(F1, G1, F2, G2, ...)`` runs half-steps
    ``(x0, x1) -> (x1, x0 + M(x1))``: each F, G pair is exactly our block
    ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` on the channel halves. It has no place for a unit
    that is not reversible, so each run of reversible blocks becomes one RevLib sequence and
    each strided unit a :class:`CheckpointedUnit` between them.
    """
    from revlib import MemoryModes, ReversibleSequential

    mode = MemoryModes.autograd_function if saving else MemoryModes.no_savings
    parts, run = [], []
    for block in body.blocks:
        if isinstance(block, ReversibleBlock):
            run += [block.f, block.g]
            continue
        if run:
            parts.append(ReversibleSequential(*run, split_dim=1, memory_mode=mode))
            run = []
        parts.append(CheckpointedUnit(block, saving))
    if run:
        parts.append(ReversibleSequential(*run, split_dim=1, memory_mode=mode))
    return nn.Sequential(*parts)


def revlib_revnet(name: str, saving: bool, units: list[int] | None = None) -> nn.Module:
    """Our RevNet ``name`` (same initialisation for the same seed) with a RevLib body."""
    net = build(name, memory_saving=False, units=units)
    net.body = revlib_body(net.body, saving)
    return net


def network(impl: str, name: str, saving: bool, units: list[int] | None = None) -> nn.Module:
    """``name`` as built by ``impl`` (``units`` overrides the preset's units per stage)."""
    if impl == "memcnn":
        return memcnn_revnet(name, saving, units)
    if impl == "revlib":
        return revlib_revnet(name, saving, units)
    return build(name, memory_saving=saving, units=units)


def _storages(value, found: dict[int, int], exclude: set[int]) -> None:
    """Record the distinct storages of the tensors in ``value`` (nested lists/tuples/dicts)."""
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude and storage.nbytes():
            found.setdefault(ptr, storage.nbytes())
    elif isinstance(value, (list, tuple)):
        for v in value:
            _storages(v, found, exclude)
    elif isinstance(value, dict):
        for v in value.values():
            _storages(v, found, exclude)


def kept_for_backward_bytes(output: torch.Tensor, exclude: nn.Module) -> int:
    """Bytes of the distinct storages the autograd graph of ``output`` holds, parameters excluded.

    Walks every node once: built-in nodes' saved tensors (their ``_saved_*`` attributes), and
    for custom Functions both ``saved_tensors`` and every tensor kept on ``ctx`` as an
    attribute, which ``saved_tensors_hooks`` never see. Storages freed in place (memcnn
    resizes the inputs it discards to zero) count zero.
    """
    params = {p.untyped_storage().data_ptr() for p in exclude.parameters()}
    found: dict[int, int] = {}
    stack, visited = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        for attr in dir(node):
            if attr.startswith("_saved_"):
                _storages(getattr(node, attr), found, params)
        if hasattr(node, "saved_tensors"):  # a custom Function's ctx
            _storages(node.saved_tensors, found, params)
            _storages(vars(node), found, params)
        stack.extend(fn for fn, _ in node.next_functions)
    return sum(found.values())


def batch_norm_updates(net: nn.Module) -> int:
    """The most times any batch norm of ``net`` has updated its running statistics.

    After one step: 1 for ours (the backward's recomputation leaves them alone); a library that
    recomputes in training mode updates them again with every recomputation.
    """
    counts = [int(m.num_batches_tracked) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    return max(counts, default=0)


def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """One forward+backward (gradients then dropped); its wall time in seconds."""
    start = time.perf_counter()
    F.cross_entropy(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def metered_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """One forward+backward; the bytes the hooks saw saved, and those the graph keeps."""
    with SavedTensorMeter(net) as meter:
        loss = F.cross_entropy(net(x), y)
    kept = kept_for_backward_bytes(loss, net)
    loss.backward()
    net.zero_grad(set_to_none=True)
    return meter.bytes, kept


def measure(
    impl: str,
    name: str,
    saving: bool,
    batch: int,
    size: int,
    steps: int,
    threads: int,
    units: list[int] | None = None,
) -> dict:
    """One network alone: saved/kept bytes, peak memory growth and median step time."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    net = network(impl, name, saving, units).to(device).train()
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
    saved, kept = metered_step(net, x, y)  # also the untimed warm-up
    times = [train_step(net, x, y) for _ in range(steps)]
    peak = (torch.cuda.max_memory_allocated() - base) if cuda else (peak_rss_bytes() - rss0)
    return {
        "impl": impl,
        "net": name,
        "depth": depth_of(name),
        "mode": "saving" if saving else "plain",
        "saved_mib": saved / MIB,
        "kept_mib": kept / MIB,
        "peak_mib": peak / MIB,
        "step_s": statistics.median(times),
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def interleaved(
    name: str,
    impls: list[str],
    batch: int,
    size: int,
    steps: int,
    threads: int,
    units: list[int] | None = None,
    clock=train_step,
) -> list[dict]:
    """The memory-saving ``name`` of every library in one process, timed step for step.

    Each step runs every library once, in an order that reverses every step, on the same
    batch; ``step_s`` is each one's median and ``step_vs_lit_rev`` the median over steps of
    its time over ours in the same step (paired, so a burst of load that hits one round
    cancels out). The
    saved/kept bytes come from one metered warm-up step each, after which ``bn_updates``
    counts the running-statistics updates that one step made. ``clock(net, x, y)`` times one
    step (a test swaps it to see the order).
    """
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    nets, rows = {}, {}
    for impl in impls:
        torch.manual_seed(0)
        nets[impl] = network(impl, name, True, units).to(device).train()
    torch.manual_seed(1)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for impl, net in nets.items():
        saved, kept = metered_step(net, x, y)
        rows[impl] = {
            "saved_mib": saved / MIB,
            "kept_mib": kept / MIB,
            "bn_updates": batch_norm_updates(net),
        }
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for step in range(steps):
        for impl in impls if step % 2 == 0 else impls[::-1]:
            times[impl].append(clock(nets[impl], x, y))
    ours = times.get("lit_rev")
    out = []
    for impl in impls:
        step_s = statistics.median(times[impl])
        out.append(
            {
                "net": name,
                "depth": depth_of(name),
                "impl": impl,
                **rows[impl],
                "step_s": step_s,
                "step_vs_lit_rev": (
                    statistics.median(t / o for t, o in zip(times[impl], ours, strict=True))
                    if ours
                    else float("nan")
                ),
                "steps": steps,
            }
        )
    return out


def targets(rows: list[dict]) -> list[dict]:
    """Per net, ours against the best of the other libraries (interleaved rows).

    ``kept_mib`` (the graph walk) is compared rather than ``saved_mib``, since the hooks miss
    what memcnn and RevLib keep on ``ctx``. Step time: where rows carry the paired
    ``step_vs_lit_rev``, the ratio is ours over the fastest other library from those paired
    ratios (``1 / min step_vs_lit_rev``), otherwise from the medians ``step_s``.
    """
    out = []
    for name in dict.fromkeys(r["net"] for r in rows):
        group = {r["impl"]: r for r in rows if r["net"] == name}
        others = [r for impl, r in group.items() if impl != "lit_rev"]
        if "lit_rev" not in group or not others:
            continue
        ours = group["lit_rev"]
        for key, label in (("step_s", "step time"), ("kept_mib", "kept for backward")):
            paired = key == "step_s" and all("step_vs_lit_rev" in r for r in others)
            if paired:
                best = min(others, key=lambda r: r["step_vs_lit_rev"])
                ratio = 1 / best["step_vs_lit_rev"]
            else:
                best = min(others, key=lambda r, k=key: r[k])
                ratio = ours[key] / best[key] if best[key] else float("nan")
            out.append(
                {
                    "net": name,
                    "quantity": label,
                    "lit_rev": ours[key],
                    "best_other": best[key],
                    "best_is": best["impl"],
                    "ratio": ratio,
                    "ok": "yes" if ratio <= 1 else "NO",
                }
            )
    return out


def _worker_command(args, job: str) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        job,
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
        "--interleaved-steps",
        str(args.interleaved_steps),
        "--threads",
        str(args.threads),
        "--impls",
        *args.impls,
        *(["--units", *map(str, args.units)] if args.units else []),
    ]


def run_isolated(args, job: str):
    """Run ``job`` in a fresh process; its JSON result, or ``None`` (and a note) if it failed."""
    done = subprocess.run(_worker_command(args, job), capture_output=True, text=True)
    if done.returncode != 0:
        last_line = done.stderr.strip().splitlines()[-1:]
        print(f"  {job} failed: {last_line}")
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

    for impl in IMPLEMENTATIONS:
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps per isolated run, after one warm-up"
    )
    parser.add_argument(
        "--interleaved-steps",
        type=int,
        default=5,
        help="timed steps per library in the interleaved run (0: skip it)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["saving", "plain"],
        choices=["saving", "plain"],
        help="isolated runs to make (none with --modes and --no-isolated)",
    )
    parser.add_argument("--no-isolated", action="store_true", help="only the interleaved runs")
    parser.add_argument(
        "--impls",
        nargs="+",
        default=list(IMPLEMENTATIONS),
        choices=IMPLEMENTATIONS,
        help="libraries to compare (those that do not import are skipped with a note)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (timings are noisy on a shared CPU)"
    )
    parser.add_argument(
        "--units",
        type=int,
        nargs="+",
        help="override every preset's units per stage (e.g. 1 1 1 for a quick smoke run)",
    )
    parser.add_argument("--out", default="logs/revnet_memory")
    parser.add_argument("--no-memcnn", action="store_true", help="same as leaving memcnn out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """``impl:name:saving`` (one isolated run) or ``interleaved:name``; prints one JSON line."""
    kind, *rest = args.worker.split(":")
    if kind == "interleaved":
        result = interleaved(
            rest[0],
            args.impls,
            args.batch_size,
            args.image_size,
            args.interleaved_steps,
            args.threads,
            args.units,
        )
    else:
        result = measure(
            kind,
            rest[0],
            rest[1] == "1",
            args.batch_size,
            args.image_size,
            args.steps,
            args.threads,
            args.units,
        )
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.no_memcnn:
        args.impls = [i for i in args.impls if i != "memcnn"]
    if args.worker:
        worker(args)
        return
    for impl in args.impls:
        if not installed(impl):
            print(f"  {impl} does not import here: left out (pip install '.[bench]')")
    args.impls = [i for i in args.impls if installed(i)]
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU, {args.threads} thread(s)"
    )
    size = f"{args.image_size}x{args.image_size}"
    print(f"batch {args.batch_size}, {size}, {device}, torch {torch.__version__}")
    rows = []
    for depth in [] if args.no_isolated else args.depths:
        for name in PAIRS[depth]:
            for impl in args.impls:
                if impl != "lit_rev" and not name.startswith("revnet"):
                    continue
                for mode in args.modes:
                    row = run_isolated(args, f"{impl}:{name}:{int(mode == 'saving')}")
                    if row is not None:
                        print(
                            f"  {impl:8s} {name:10s} {row['mode']:6s} "
                            f"saved {row['saved_mib']:8.1f} MiB  kept {row['kept_mib']:8.1f} MiB  "
                            f"peak {row['peak_mib']:8.1f} MiB  step {row['step_s']:.3f} s",
                            flush=True,
                        )
                        rows.append(row)
    together = []
    if args.interleaved_steps > 0 and len(args.impls) > 1:
        for depth in args.depths:
            result = run_isolated(args, f"interleaved:{PAIRS[depth][1]}")
            if result is not None:
                print(format_table(result, digits=3), flush=True)
                together += result
    print()
    print(format_table(rows, digits=3))
    checks = ratios(rows)
    print()
    print(format_table(checks, digits=3))
    goals = targets(together)
    if goals:
        print(f"\ninterleaved in one process ({args.interleaved_steps} steps each, medians)")
        print(format_table(together, digits=3))
        print("\ntargets: ours <= the best of the other libraries")
        print(format_table(goals, digits=3))
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
        "impls": args.impls,
        "interleaved_steps": args.interleaved_steps,
        "units": args.units,
        "memcnn_reference_issue5": MEMCNN_REFERENCE,
    }
    out = Path(args.out)
    write_report(rows, out, "revnet_memory", meta)
    write_report(checks, out, "revnet_memory_ratios", meta)
    write_report(together, out, "revnet_memory_interleaved", meta)
    write_report(goals, out, "revnet_memory_targets", meta)
    write_report(error_rows, out, "revnet_reconstruction_error", meta)
    if rows:
        print(f"\nwrote {save_figure(plot(rows), out, 'revnet_memory')} and tables in {out}/")
    else:
        print(f"\nwrote tables in {out}/")


if __name__ == "__main__":
    main()

"""The figures of ``docs/figures/``, made from the quick configs on a CPU, no download.

    python -m lit_rev.commands.figures [--out docs/figures] [--torch_threads 1] \
        [--work_dir logs/figures] [--only NAME ...] [--retrain]

1. ``quickstart_bpd_histograms``: bits/dim of the in-distribution test set against each OOD set
   (the paper's Fig. 1 style), from the quickstart Glow (``configs/quickstart.yaml``);
2. ``quickstart_decomposition``: its density term ``log p(z)`` and volume term ``log|det|``;
3. ``quickstart_graying``: its bits/dim as the test images are shrunk toward their mean;
4. ``revnet_memory``: activation memory saved for the backward against depth, RevNets beside
   ResNets of equal size (one forward and backward of each, a small CIFAR-sized batch);
5. ``grad_plane``: accuracy against discrimination on Adult for Vanilla, GRAD-pred, GRAD-auto,
   LFR and ALFR (``configs/fair/*_adult.yaml``, one seed).

The quickstart is trained once per work directory with ``python -m lit_rev fit --config
configs/quickstart.yaml`` (a subprocess, about 3 minutes on one thread); later calls reuse its
checkpoint when the config and overrides are the same. Each figure is a function of the work
directory that returns the PNG's path, and refuses to draw numbers that are not finite
(:class:`NonFiniteResult`): an empty or truncated plot would look like a finding. The numbers
behind each figure go to ``<work_dir>/<name>.{json,csv,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lit_rev.commands.fair_results import run_once
from lit_rev.config import instantiate
from lit_rev.density.analysis import (
    decomposition,
    decomposition_figure,
    graying_curve,
    graying_figure,
    images_of,
    score_images,
)
from lit_rev.density.ood import auroc
from lit_rev.fair.results import headline
from lit_rev.report import save_figure, write_report
from lit_rev.revnet import SavedTensorMeter, build
from lit_rev.revnet.memory import MIB

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
FAIR = REPO / "configs" / "fair"

#: The fairness runs of the accuracy-discrimination plane: label -> config chain (``A+B`` runs
#: ``B`` on the frozen encoder of ``A``, as ``lit_rev.fair.results`` does).
GRAD_PLANE_RUNS: dict[str, tuple[str, ...]] = {
    "Vanilla": ("vanilla_adult.yaml",),
    "GRAD-pred": ("grad_pred_adult.yaml",),
    "GRAD-auto": ("grad_auto_adult.yaml", "grad_auto_adult_classifier.yaml"),
    "LFR": ("lfr_adult.yaml",),
    "ALFR": ("alfr_adult.yaml",),
}

#: ResNet and RevNet presets of (nearly) equal parameter count, by RevNet depth.
REVNET_PAIRS: dict[int, tuple[str, str]] = {
    38: ("resnet32", "revnet38"),
    110: ("resnet110", "revnet110"),
    164: ("resnet164", "revnet164"),
}


class NonFiniteResult(ValueError):
    """A figure's numbers hold NaN or infinity: the run diverged or is untrained, nothing drawn."""


def require_finite(figure: str, what: str, values) -> None:
    """Raise :class:`NonFiniteResult`, naming ``figure`` and ``what``, if a value is not finite."""
    array = np.asarray(values, dtype=float).reshape(-1)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise NonFiniteResult(
            f"{figure}: {bad} of {array.size} values of {what} are not finite (NaN or inf), so "
            "there is nothing honest to draw. The run diverged or is untrained: check its "
            "training log, lower the learning rate or train longer, then run the figure again"
        )


def _kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KB"


# ----------------------------------------------------------------------------- quickstart Glow
def quickstart_run_dir(work_dir: str | Path) -> Path:
    """Where the quickstart Glow of ``work_dir`` is trained (the TensorBoard version dir)."""
    return Path(work_dir) / "quickstart" / "run"


def train_quickstart(
    work_dir: str | Path,
    overrides: Sequence[str] = (),
    config: str | Path = QUICKSTART,
    torch_threads: int = 1,
    retrain: bool = False,
) -> Path:
    """The ``last.ckpt`` of the quickstart Glow in ``work_dir``; trains it first if needed.

    Training is ``python -m lit_rev fit --config <config> <overrides>`` in a subprocess, logging
    to :func:`quickstart_run_dir`. A finished run records its config and overrides in
    ``figures_run.json``; a later call with the same ones reuses its checkpoint. A run directory
    of other settings (or an unfinished one) is an error unless ``retrain`` replaces it.
    """
    run_dir = quickstart_run_dir(work_dir)
    request = {"config": str(Path(config).resolve()), "overrides": list(overrides)}
    record = run_dir / "figures_run.json"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if run_dir.exists() and not retrain:
        recorded = json.loads(record.read_text()) if record.is_file() else None
        if recorded == request and ckpt.is_file():
            print(f"  reusing the trained quickstart Glow: {ckpt} (--retrain trains it again)")
            return ckpt
        held = f"a run of other settings, {recorded}," if recorded else "an unfinished run"
        raise FileExistsError(
            f"{run_dir} holds {held} not one of {request}. Pass --retrain (retrain=True) to "
            "replace it, or another --work_dir"
        )
    if run_dir.exists():
        shutil.rmtree(run_dir)
    command = [
        sys.executable,
        "-m",
        "lit_rev",
        "fit",
        "--config",
        str(config),
        f"--torch_threads={torch_threads}",
        f"--trainer.logger.init_args.save_dir={Path(work_dir).resolve()}",
        "--trainer.logger.init_args.name=quickstart",
        "--trainer.logger.init_args.version=run",
        "--trainer.enable_progress_bar=false",
        *overrides,
    ]
    print(
        f"  training (the quickstart takes about 3 min on one thread): {' '.join(command[1:])}",
        flush=True,
    )
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not ckpt.is_file():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise RuntimeError(
            f"training the quickstart Glow failed (exit {done.returncode}; no {ckpt}):\n{tail}"
        )
    record.write_text(json.dumps(request, indent=2))
    print(f"  trained in {time.time() - started:.0f} s: {ckpt}", flush=True)
    return ckpt


def quickstart_sets(
    work_dir: str | Path,
    overrides: Sequence[str] = (),
    max_images: int | None = None,
    **train_kwargs,
) -> tuple[torch.nn.Module, str, dict[str, torch.Tensor]]:
    """The trained quickstart module, its in-distribution set's name, and every test set's images.

    The module and DataModule are rebuilt from the config and the checkpoint of
    :func:`train_quickstart` by :func:`lit_rev.config.instantiate`.
    """
    config = train_kwargs.get("config", QUICKSTART)
    ckpt = train_quickstart(work_dir, overrides, **train_kwargs)
    module, dm = instantiate(str(config), overrides=list(overrides), ckpt_path=str(ckpt))
    module.eval()
    dm.setup("test")
    sets = {
        name: images_of(ds, max_images)
        for name, ds in zip(dm.test_names, dm.test_sets, strict=True)
    }
    return module, dm.test_names[0], sets


def bpd_histograms_plot(bpd: dict[str, torch.Tensor], in_name: str, title: str = ""):
    """One panel per OOD set: its bits/dim histogram over the in-distribution one's, with AUROC.

    ``bpd`` maps set names to per-image bits/dim, the in-distribution set ``in_name`` among
    them. All panels share the bins (0.5-99.5 percentiles of every value), so they compare.
    """
    import matplotlib.pyplot as plt

    for name, values in bpd.items():
        require_finite("bits/dim histograms", f"the bits/dim of {name}", values)
    ood = [n for n in bpd if n != in_name]
    if not ood:
        raise ValueError(f"bits/dim histograms: no OOD set beside {in_name!r}; got {list(bpd)}")
    everything = np.concatenate([np.asarray(v, dtype=float) for v in bpd.values()])
    lo, hi = np.percentile(everything, [0.5, 99.5])
    edges = np.linspace(lo, hi + (hi <= lo), 51)
    cols = min(3, len(ood))
    rows = math.ceil(len(ood) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    inside = np.clip(np.asarray(bpd[in_name], dtype=float), lo, hi)
    for ax, name in zip(axes.flat, ood, strict=False):
        outside = np.clip(np.asarray(bpd[name], dtype=float), lo, hi)
        ax.hist(inside, edges, density=True, alpha=0.5, color="tab:blue", label=f"{in_name} (in)")
        ax.hist(outside, edges, density=True, alpha=0.5, color="tab:red", label=f"{name} (OOD)")
        score = auroc(torch.as_tensor(bpd[in_name]), torch.as_tensor(bpd[name]))
        ax.set_title(f"{name}: AUROC {score:.2f}", fontsize=10)
        ax.set_xlabel("bits/dim (lower = more likely)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ood) :]:
        ax.set_visible(False)
    fig.suptitle(
        title
        or f"Bits/dim of a Glow trained on {in_name}: test set vs each OOD set "
        "(AUROC < 0.5: OOD looks more likely)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def quickstart_bpd_histograms(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    overrides: Sequence[str] = (),
    max_images: int | None = None,
    **train_kwargs,
) -> Path:
    """Figure 1: the quickstart Glow's bits/dim, test set against each OOD set; the PNG's path."""
    module, in_name, sets = quickstart_sets(work_dir, overrides, max_images, **train_kwargs)
    bpd = {name: score_images(module, k)["bpd"].double() for name, k in sets.items()}
    rows = [
        {"set": n, "n": len(v), "bpd_mean": v.mean().item(), "bpd_std": v.std().item()}
        for n, v in bpd.items()
    ]
    write_report(rows, work_dir, "quickstart_bpd_histograms")
    return save_figure(bpd_histograms_plot(bpd, in_name), out_dir, "quickstart_bpd_histograms")


def decomposition_plot(values: dict[str, dict[str, torch.Tensor]], in_name: str):
    """:func:`lit_rev.density.analysis.decomposition_figure` after a finiteness check."""
    for name, parts in values.items():
        for key in ("log_pz", "log_det"):
            require_finite("decomposition", f"{key} of {name}", parts[key])
    fig = decomposition_figure(values, in_name)
    fig.tight_layout()
    return fig


def quickstart_decomposition(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    overrides: Sequence[str] = (),
    max_images: int | None = None,
    **train_kwargs,
) -> Path:
    """Figure 2: the quickstart Glow's ``log p(z)`` and ``log|det|`` per set; the PNG's path."""
    module, in_name, sets = quickstart_sets(work_dir, overrides, max_images, **train_kwargs)
    rows, values = decomposition(module, sets)
    write_report(rows, work_dir, "quickstart_decomposition")
    return save_figure(decomposition_plot(values, in_name), out_dir, "quickstart_decomposition")


def graying_plot(rows: list[dict], in_name: str):
    """:func:`lit_rev.density.analysis.graying_figure` with a legend, after a finiteness check."""
    require_finite("graying curve", "bits/dim", [r["bpd"] for r in rows])
    fig = graying_figure(rows, in_name)
    ax = fig.axes[0]
    ax.lines[0].set_label(f"mean bits/dim of the grayed {in_name} test set")
    for r in rows:
        ax.annotate(
            f"{r['bpd']:.2f}",
            (r["factor"], r["bpd"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.margins(y=0.12)  # room for the labels of the end points
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def quickstart_graying(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    overrides: Sequence[str] = (),
    max_images: int | None = None,
    **train_kwargs,
) -> Path:
    """Figure 3: the quickstart Glow's bits/dim against the graying factor; the PNG's path."""
    module, in_name, sets = quickstart_sets(work_dir, overrides, max_images, **train_kwargs)
    rows = graying_curve(module, sets[in_name])
    write_report(rows, work_dir, "quickstart_graying")
    return save_figure(graying_plot(rows, in_name), out_dir, "quickstart_graying")


# ----------------------------------------------------------------------------- RevNet memory
def saved_activation_mib(
    name: str, memory_saving: bool, batch_size: int, image_size: int, seed: int = 0
) -> float:
    """MiB autograd saves for the backward in one forward of preset ``name`` (then its backward).

    Counted by :class:`lit_rev.revnet.SavedTensorMeter` (each storage once, parameters
    excluded) on random CIFAR-shaped inputs, train mode.
    """
    torch.manual_seed(seed)
    net = build(name, memory_saving=memory_saving).train()
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(0, 10, (batch_size,))
    with SavedTensorMeter(net) as meter:
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    return meter.bytes / MIB


def revnet_memory_rows(
    depths: Sequence[int] = (38, 110, 164), batch_size: int = 32, image_size: int = 32
) -> list[dict]:
    """One row per (network, backward) of :data:`REVNET_PAIRS` at ``depths``: saved MiB."""
    rows = []
    for depth in depths:
        if depth not in REVNET_PAIRS:
            raise ValueError(f"depths: {depth} is not one of {sorted(REVNET_PAIRS)}")
        for name in REVNET_PAIRS[depth]:
            for saving in (True, False):
                started = time.time()
                mib = saved_activation_mib(name, saving, batch_size, image_size)
                rows.append(
                    {
                        "net": name,
                        "depth": int("".join(c for c in name if c.isdigit())),
                        "backward": "memory-saving" if saving else "plain",
                        "saved_mib": mib,
                        "seconds": time.time() - started,
                    }
                )
                print(f"    {name:10s} {rows[-1]['backward']:13s} {mib:8.1f} MiB", flush=True)
    return rows


def revnet_memory_plot(rows: list[dict], batch_size: int, image_size: int):
    """Saved-activation MiB against depth (log y), one line per family and kind of backward."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    require_finite("RevNet memory", "saved MiB", [r["saved_mib"] for r in rows])
    styles = {
        ("revnet", "memory-saving"): ("RevNet, reversible backward", "tab:green", "-o"),
        ("revnet", "plain"): ("RevNet, plain autograd", "tab:green", ":o"),
        ("resnet", "plain"): ("ResNet, plain autograd", "tab:red", "-s"),
        ("resnet", "memory-saving"): ("ResNet, per-unit checkpointing", "tab:red", ":s"),
    }
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (family, backward), (label, color, style) in styles.items():
        rs = sorted(
            (r for r in rows if r["net"].startswith(family) and r["backward"] == backward),
            key=lambda r: r["depth"],
        )
        if not rs:
            continue
        ax.plot(
            [r["depth"] for r in rs], [r["saved_mib"] for r in rs], style, color=color, label=label
        )
        for r in rs:
            ax.annotate(
                f"{r['saved_mib']:.0f}",
                (r["depth"], r["saved_mib"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 3),
            )
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(sorted({r["depth"] for r in rows}))
    ax.set_xlabel("depth (layers; ResNet-32/110/164 beside RevNet-38/110/164)")
    ax.set_ylabel("activations saved for backward (MiB, log scale)")
    ax.set_title(
        f"Activation memory vs depth (batch {batch_size}, {image_size}x{image_size}, "
        "one training step)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def revnet_memory(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    depths: Sequence[int] = (38, 110, 164),
    batch_size: int = 32,
    image_size: int = 32,
) -> Path:
    """Figure 4: activation memory of RevNets and ResNets against depth; the PNG's path."""
    rows = revnet_memory_rows(depths, batch_size, image_size)
    meta = {"batch_size": batch_size, "image_size": image_size, "torch": torch.__version__}
    write_report(rows, work_dir, "revnet_memory", meta)
    fig = revnet_memory_plot(rows, batch_size, image_size)
    return save_figure(fig, out_dir, "revnet_memory")


# ----------------------------------------------------------------------------- GRAD plane
def grad_plane_rows(
    work_dir: str | Path,
    runs: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> list[dict]:
    """Fit and test each fairness run of ``runs`` (default :data:`GRAD_PLANE_RUNS`) at ``seed``.

    Returns one row per run: its label, test accuracy and discrimination (of the first
    protected attribute) and the seconds it took. Logs go to ``<work_dir>/fair``.
    """
    rows = []
    for label, chain in (runs or GRAD_PLANE_RUNS).items():
        configs = [str(c if Path(c).is_absolute() else FAIR / c) for c in chain]
        for config in configs:
            if not Path(config).is_file():
                raise FileNotFoundError(f"grad_plane: the config {config} of {label} is missing")
        started = time.time()
        results = headline(run_once(configs, seed, list(extra), Path(work_dir) / "fair"))
        rows.append(
            {
                "model": label,
                "accuracy": results["accuracy"],
                "discrimination": results.get("discrimination", math.nan),
                "seconds": time.time() - started,
            }
        )
        print(
            f"    {label:10s} accuracy {rows[-1]['accuracy']:.3f}  "
            f"discrimination {rows[-1]['discrimination']:.3f}  ({rows[-1]['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def grad_plane_plot(rows: list[dict], title: str = ""):
    """Each run a labelled point: discrimination (x) against test accuracy (y).

    The axes of ``notebooks/grad_tradeoff.ipynb``: the fair and accurate corner is top left.
    """
    import matplotlib.pyplot as plt

    for r in rows:
        for key in ("accuracy", "discrimination"):
            require_finite("GRAD plane", f"the {key} of {r['model']}", [r[key]])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = {"Vanilla": "black", "GRAD-pred": "tab:green", "GRAD-auto": "tab:olive"}
    for r in rows:
        grad = r["model"].startswith("GRAD")
        point = (r["discrimination"], r["accuracy"])
        ax.scatter(
            *point,
            s=60,
            zorder=3,
            marker="o" if grad else "s",
            color=colors.get(r["model"], "tab:blue"),
        )
        ax.annotate(r["model"], point, fontsize=9, textcoords="offset points", xytext=(6, 4))
    accuracy = [r["accuracy"] for r in rows]
    discrimination = [r["discrimination"] for r in rows]
    pad = max(0.005, 0.15 * (max(accuracy) - min(accuracy)))
    ax.set_ylim(min(accuracy) - pad, max(accuracy) + pad)
    ax.set_xlim(0, max(discrimination) * 1.25 + 1e-3)
    ax.set_xlabel("discrimination |mean p(s=1) − mean p(s=0)| (lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Adult, protected attribute sex: accuracy vs discrimination", fontsize=10)
    ax.grid(True, alpha=0.3)
    kinds = [
        ax.scatter([], [], marker="o", color="gray", label="GRAD (gradient reversal)"),
        ax.scatter([], [], marker="s", color="gray", label="Vanilla and baselines"),
    ]
    ax.legend(handles=kinds, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def grad_plane(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    runs: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> Path:
    """Figure 5: GRAD and the baselines on Adult's accuracy-discrimination plane; the PNG's path."""
    rows = grad_plane_rows(work_dir, runs, seed, extra)
    write_report(rows, work_dir, "grad_plane", {"seed": seed, "extra": list(extra)})
    title = f"Adult (protected: sex), test split, seed {seed}: accuracy vs discrimination"
    return save_figure(grad_plane_plot(rows, title), out_dir, "grad_plane")


# ----------------------------------------------------------------------------- command line
FIGURES: dict[str, Callable[..., Path]] = {
    "quickstart_bpd_histograms": quickstart_bpd_histograms,
    "quickstart_decomposition": quickstart_decomposition,
    "quickstart_graying": quickstart_graying,
    "revnet_memory": revnet_memory,
    "grad_plane": grad_plane,
}


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Make every figure (or those of ``--only``); exit 1 naming any that failed."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.figures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default="docs/figures", help="where the PNGs go")
    parser.add_argument(
        "--work_dir", default="logs/figures", help="training runs and the numbers behind each PNG"
    )
    parser.add_argument("--torch_threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=None)
    parser.add_argument(
        "--retrain", action="store_true", help="train the quickstart Glow again even if it exists"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    names = args.only or list(FIGURES)
    quickstart = {"torch_threads": args.torch_threads, "retrain": args.retrain}
    written, failed = {}, {}
    started = time.time()
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        kwargs = quickstart if name.startswith("quickstart") else {}
        began = time.time()
        try:
            written[name] = FIGURES[name](args.work_dir, args.out, **kwargs)
        except Exception as error:  # report it, make the others, exit 1 at the end
            failed[name] = f"{type(error).__name__}: {error}"
            print(f"[{i}/{len(names)}] {name} FAILED: {failed[name]}", flush=True)
            continue
        quickstart["retrain"] = False  # trained once, reused by the other quickstart figures
        path = written[name]
        print(
            f"[{i}/{len(names)}] wrote {path} ({_kib(path)}, {time.time() - began:.0f} s)",
            flush=True,
        )
    print(f"{len(written)} figure(s) in {time.time() - started:.0f} s; numbers in {args.work_dir}")
    if failed:
        raise SystemExit(
            "figures that failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
        )
    return written


if __name__ == "__main__":
    main()

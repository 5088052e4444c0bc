"""The figures of ``docs/figures/``, made from the quick configs on a CPU, no download.

    python -m lit_rev.commands.figures [--out docs/figures] [--torch_threads 1] \
        [--work_dir logs/figures] [--only NAME ...] [--retrain] \
        [--quickstart_config configs/quickstart.yaml] [--fair_configs configs/fair]

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
(:class:`lit_rev.report.NonFiniteResult`): an empty or truncated plot would look like a
finding. The numbers behind each figure go to ``<work_dir>/<name>.{json,csv,md}``.

The configs are read from ``--quickstart_config`` and ``--fair_configs``, by default
``configs/...`` of the current directory (the repository root when run as above); a missing
one stops the command before anything runs. Each figure's rows and plot live beside its data:
:mod:`lit_rev.density.plots`, :mod:`lit_rev.revnet.memory_figure` and
:mod:`lit_rev.fair.tradeoff`; the fairness runs are :mod:`lit_rev.evaluation.fair_runs`'.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lit_rev.config import instantiate
from lit_rev.density.analysis import decomposition, graying_curve, images_of
from lit_rev.density.plots import (
    bpd_histograms_plot,
    bpd_of_sets,
    bpd_rows,
    decomposition_plot,
    graying_plot,
)
from lit_rev.evaluation.fair_runs import run_once
from lit_rev.fair.tradeoff import grad_plane_plot, grad_plane_rows
from lit_rev.report import atomic_open, save_figure, write_report
from lit_rev.revnet.memory_figure import revnet_memory_plot, revnet_memory_rows

#: The configs' default places, relative to the current directory (not the installed source).
QUICKSTART = Path("configs") / "quickstart.yaml"
FAIR = Path("configs") / "fair"

#: The fairness runs of the accuracy-discrimination plane: label -> config chain (``A+B`` runs
#: ``B`` on the frozen encoder of ``A``, as ``lit_rev.fair.results`` does).
GRAD_PLANE_RUNS: dict[str, tuple[str, ...]] = {
    "Vanilla": ("vanilla_adult.yaml",),
    "GRAD-pred": ("grad_pred_adult.yaml",),
    "GRAD-auto": ("grad_auto_adult.yaml", "grad_auto_adult_classifier.yaml"),
    "LFR": ("lfr_adult.yaml",),
    "ALFR": ("alfr_adult.yaml",),
}


def _kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KB"


def missing_config(flag: str, path: str | Path) -> str:
    """The message for a config file that is not there, naming the flag that gives it."""
    return (
        f"{flag} {path}: no such file (relative paths are read from the current directory, "
        f"{Path.cwd()}); run from the repository root or pass the file's path with {flag}"
    )


def grad_plane_chains(
    runs: dict[str, Sequence[str]] | None = None, config_dir: str | Path = FAIR
) -> dict[str, list[str]]:
    """Each run's configs (default :data:`GRAD_PLANE_RUNS`) as paths under ``config_dir``.

    A relative config name is read under ``config_dir`` (``--fair_configs``); a missing file
    is a :class:`FileNotFoundError` naming the flag.
    """
    chains = {}
    for label, chain in (runs or GRAD_PLANE_RUNS).items():
        configs = [str(c if Path(c).is_absolute() else Path(config_dir) / c) for c in chain]
        for config in configs:
            if not Path(config).is_file():
                raise FileNotFoundError(
                    f"grad_plane, run {label}: " + missing_config("--fair_configs", config)
                )
        chains[label] = configs
    return chains


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
    if not Path(config).is_file():
        raise FileNotFoundError(missing_config("--quickstart_config", config))
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
    with atomic_open(record) as f:
        f.write(json.dumps(request, indent=2))
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


def quickstart_bpd_histograms(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    overrides: Sequence[str] = (),
    max_images: int | None = None,
    **train_kwargs,
) -> Path:
    """Figure 1: the quickstart Glow's bits/dim, test set against each OOD set; the PNG's path."""
    module, in_name, sets = quickstart_sets(work_dir, overrides, max_images, **train_kwargs)
    bpd = bpd_of_sets(module, sets)
    write_report(bpd_rows(bpd), work_dir, "quickstart_bpd_histograms")
    return save_figure(bpd_histograms_plot(bpd, in_name), out_dir, "quickstart_bpd_histograms")


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


def grad_plane(
    work_dir: str | Path,
    out_dir: str | Path = "docs/figures",
    runs: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    extra: Sequence[str] = (),
    config_dir: str | Path = FAIR,
) -> Path:
    """Figure 5: GRAD and the baselines on Adult's accuracy-discrimination plane; the PNG's path.

    Each run of ``runs`` (default :data:`GRAD_PLANE_RUNS`, configs under ``config_dir``) is
    fitted and tested at ``seed``, logging to ``<work_dir>/fair``.
    """
    chains = grad_plane_chains(runs, config_dir)
    log_root = Path(work_dir) / "fair"
    rows = grad_plane_rows(chains, lambda configs: run_once(configs, seed, list(extra), log_root))
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
    parser.add_argument(
        "--quickstart_config",
        default=str(QUICKSTART),
        help="the quickstart Glow's config (default: configs/quickstart.yaml of the current "
        "directory)",
    )
    parser.add_argument(
        "--fair_configs",
        default=str(FAIR),
        help="the directory of the GRAD plane's configs (default: configs/fair of the current "
        "directory)",
    )
    args = parser.parse_args(argv)
    names = args.only or list(FIGURES)
    quickstart_figures = any(name.startswith("quickstart") for name in names)
    if quickstart_figures and not Path(args.quickstart_config).is_file():
        parser.error(missing_config("--quickstart_config", args.quickstart_config))
    if "grad_plane" in names:
        try:
            grad_plane_chains(config_dir=args.fair_configs)
        except FileNotFoundError as error:
            parser.error(str(error))
    torch.set_num_threads(args.torch_threads)
    quickstart = {
        "config": args.quickstart_config,
        "torch_threads": args.torch_threads,
        "retrain": args.retrain,
    }
    written, failed = {}, {}
    started = time.time()
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        kwargs = quickstart if name.startswith("quickstart") else {}
        if name == "grad_plane":
            kwargs = {"config_dir": args.fair_configs}
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

"""The analyses of :mod:`lit_rev.density.analysis` on a trained checkpoint, from the command line.

    python -m lit_rev.commands.analysis decomposition --config <yaml> --ckpt_path <ckpt>
    python -m lit_rev.commands.analysis graying       --config <yaml> --ckpt_path <ckpt>
    python -m lit_rev.commands.analysis second_order  --config <yaml> --ckpt_path <ckpt> \
        [--ood_set NAME]

Each command builds the model and data from the same YAML as ``fit``/``test`` with
:func:`lit_rev.config.instantiate` (any ``--section.key=value`` override, after ``--`` or not,
is passed through), loads the checkpoint strictly and safely, prints a table and writes
``<name>.{json,csv,md}`` and a figure to ``--out_dir`` (default: the checkpoint's run
directory).

Without ``--ckpt_path`` the analyses would score the random weights the config builds, so the
command exits 2 unless ``--allow_untrained`` asks for that on purpose (as ``python -m lit_rev
test`` does). A config whose model is not a density model (a RevNet or fairness config) exits
2 naming it: the analyses need a :class:`lit_rev.density.module.DensityModule`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import torch
from lightning.pytorch.utilities.seed import isolate_rng

from lit_rev.config import ConfigError, instantiate
from lit_rev.density.analysis import (
    SECOND_ORDER_QUANTITIES,
    TraceMethod,
    decomposition,
    decomposition_figure,
    graying_curve,
    graying_figure,
    images_of,
    second_order,
    second_order_rows,
)
from lit_rev.density.module import DensityModule
from lit_rev.report import format_table, save_figure, write_report

ANALYSES = ("decomposition", "graying", "second_order")


def load(config: str, ckpt_path: str | None, overrides: Sequence[str] = ()):
    """Model (in eval mode) and DataModule of a ``fit`` YAML plus overrides, with the weights.

    :func:`lit_rev.config.instantiate`: the checkpoint is read with
    ``torch.load(weights_only=True)`` (no code in it runs) and loaded strictly; a checkpoint of
    another architecture or config is an error naming both files and the keys that disagree,
    never a partly initialised model.
    """
    module, dm = instantiate(config, overrides, ckpt_path)
    module.eval()
    return module, dm


def require_density_model(options: argparse.ArgumentParser, config: str, module) -> None:
    """Exit 2 naming ``config`` and its model unless it is a density model."""
    if not isinstance(module, DensityModule):
        kind = f"{type(module).__module__}.{type(module).__name__}"
        options.error(
            f"--config {config} builds a {kind}, not a density model: the analyses score "
            "images by their log-likelihood and need a DensityModule (a config of "
            "configs/density/ or configs/quickstart.yaml)"
        )


def parser() -> argparse.ArgumentParser:
    """The command's options (unknown ``--key=value`` arguments are config overrides)."""
    options = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.analysis", description=__doc__.split("\n\n")[0]
    )
    options.add_argument("analysis", choices=ANALYSES)
    options.add_argument("--config", required=True)
    options.add_argument(
        "--ckpt_path", default=None, help="the trained model (a last.ckpt written by fit)"
    )
    options.add_argument(
        "--allow_untrained",
        action="store_true",
        help="without --ckpt_path, score the random weights the config builds, on purpose",
    )
    options.add_argument(
        "--out_dir", default=None, help="default: the checkpoint's run directory (else .)"
    )
    options.add_argument("--max_images", type=int, default=1000, help="images per set")
    options.add_argument(
        "--ood_set",
        default=None,
        help="second_order: the set q (default: a grayed set if any, else the first OOD set)",
    )
    options.add_argument("--method", default="exact", choices=get_args(TraceMethod))
    options.add_argument(
        "--probes", type=int, default=64, help="second_order --method hutchinson: random probes"
    )
    options.add_argument(
        "--curvature_points",
        type=int,
        default=0,
        help="second_order: also average the Hessian over this many "
        "in-distribution images (2 x max_images Hessian-vector products each)",
    )
    options.add_argument("--torch_threads", type=int, default=None)
    return options


def main(argv: list[str] | None = None) -> list[dict]:
    """Run one analysis from the command line (see the module docstring); returns its rows."""
    options = parser()
    args, overrides = options.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if not args.ckpt_path and not args.allow_untrained:
        options.error(
            f"{args.analysis} without --ckpt_path scores the untrained model that "
            f"{args.config} builds (random weights): its numbers mean nothing. Pass the file: "
            "--ckpt_path=<run dir>/checkpoints/last.ckpt (written by python -m lit_rev fit), "
            "or --allow_untrained to score random weights on purpose"
        )
    try:
        # built untrained first, so another kind of model is named before its checkpoint is
        # read; the random state is put back, so the analysis draws what it drew without it
        with isolate_rng():
            untrained, _ = load(args.config, None, overrides)
        require_density_model(options, args.config, untrained)
        module, dm = load(args.config, args.ckpt_path, overrides)
    except ConfigError as error:  # a bad key or value: exit 2 naming it, as python -m lit_rev
        options.error(str(error))
    dm.setup("test")
    sets = {
        name: images_of(ds, args.max_images)
        for name, ds in zip(dm.test_names, dm.test_sets, strict=True)
    }
    in_name = dm.test_names[0]
    out_dir = (
        Path(args.out_dir)
        if args.out_dir
        else (Path(args.ckpt_path).resolve().parents[1] if args.ckpt_path else Path("."))
    )
    meta = {
        "config": args.config,
        "ckpt_path": args.ckpt_path,
        "network": type(module.network).__name__,
        "torch_threads": torch.get_num_threads(),
        "max_images": args.max_images,
    }
    if args.analysis == "decomposition":
        rows, values = decomposition(module, sets)
        save_figure(decomposition_figure(values, in_name), out_dir, "decomposition")
    elif args.analysis == "graying":
        rows = graying_curve(module, sets[in_name])
        save_figure(graying_figure(rows, in_name), out_dir, "graying")
    else:
        if len(dm.test_names) < 2:
            raise ValueError(
                f"second_order needs an OOD set q; the config {args.config} "
                f"has only {dm.test_names}"
            )
        q = args.ood_set or next((n for n in dm.test_names[1:] if "gray" in n), dm.test_names[1])
        if q not in sets:
            raise ValueError(
                f"--ood_set {q!r} is not a test set of {args.config}; "
                f"choose one of {dm.test_names[1:]}"
            )
        result = second_order(
            module,
            sets[in_name],
            sets[q],
            method=args.method,
            probes=args.probes,
            curvature_points=args.curvature_points,
        )
        rows = second_order_rows(result, sets[in_name][0].numel())
        quantities = dict(SECOND_ORDER_QUANTITIES)
        meta.update({"p": in_name, "q": q})
        meta.update({k: v for k, v in result.items() if k not in quantities})
    write_report(rows, out_dir, args.analysis, meta)
    title = ""
    if args.analysis == "second_order":
        title = f"p = {in_name}, q = {meta['q']}; nats per image and bits/dim"
    print(
        f"\n{args.analysis} ({type(module.network).__name__}, trained on {in_name}) {title}\n"
        f"{format_table(rows)}\nReport: {out_dir / (args.analysis + '.md')}"
    )
    return rows


if __name__ == "__main__":
    main()

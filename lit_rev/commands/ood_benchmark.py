"""One OOD benchmark: likelihood scores beside classifier detectors, in the field's metrics.

    python -m lit_rev.commands.ood_benchmark --config configs/ood/mnist5k_embedded.yaml \
        [--out DIR] [--torch_threads N] [--max_images N] [--ckpt_paths.NAME PATH] [--help]

The YAML names one in-distribution DataModule with its OOD sets (``data:``, the block of any
lit_rev config, e.g. an ``ImageDataModule`` with ``ood:``) and a list of ``detectors:``, each
one of

* ``DensityEntry``: a density model (a ``DensityModule`` config) and the scores to report:
  raw bits/dim (``bpd``), ``typicality``, input ``complexity``, ... (the scores of
  :mod:`lit_rev.density.scores`);
* ``ClassifierEntry``: a classifier (an ``ImageClassifier`` config) and the post-hoc
  detectors of :mod:`lit_rev.ood.detectors` to run on it (``msp``, ``max_logit``,
  ``energy``, ``odin``, ``mahalanobis``, ``knn``);
* ``WAICEntry``: K density models (K configs, or one config and K seeds) scored by the WAIC
  of Choi et al. 2018, :func:`lit_rev.ood.ensemble.waic_score`.

Each model comes from its own config, with a checkpoint (``ckpt_path``, or
``--ckpt_paths.NAME PATH`` on the command line) or trained from nothing by
:func:`lit_rev.config.instantiate_with_trainer` at the config's budget (``max_steps`` and
``overrides`` change it). The detectors' configs only say how to build and train the model:
every detector is evaluated on the benchmark's own ``data:`` (the same in-distribution test
images and the same OOD sets), and a model whose training set, image shape or ``n_bits`` does
not fit those data stops the command before anything is trained.

It prints and writes one table: detector x OOD set x {AUROC, AUPR-in, AUPR-out, FPR@95}
(:func:`lit_rev.ood.ood_metrics`; OOD is the positive class, higher score = more OOD) beside
OpenOOD v1.5's forms of AUPR-in, AUPR-out and FPR@95 (:func:`lit_rev.ood.openood_metrics`,
columns ``*_openood``), plus the mean over the OOD sets per detector and, with
``--ood_groups`` (e.g. near and far), the mean over each group (``mean_<group>``), to
``<out>/ood_benchmark.{json,csv,md}``; a summary (AUROC / FPR@95 per set and mean, and
whether the detector reaches AUROC >= 0.95 and FPR@95 <= 0.2 on every set) to
``<out>/ood_benchmark_summary.{json,csv,md}``; heat maps of AUROC and FPR@95
(``heatmap_auroc.png``, ``heatmap_fpr_at_95_tpr.png``), also logged to TensorBoard under
``<out>/tensorboard``. ``--fpr_convention`` picks the FPR@95 of the summary, the heat map and
the target: ``in`` (default; TPR on the in-distribution set) or ``openood`` (TPR on the OOD
set, heat map ``heatmap_fpr_at_95_tpr_openood.png``); the summary's ``metrics`` column and
the JSON ``meta`` say which. A score with a NaN or infinite value gives no metric: its cells are
missing (``null`` in the JSON) with the reason in ``missing``, the other cells stand, and the
command exits 1 after writing everything. Each detector's per-image scores are saved to
``<out>/scores/<name>.pt`` as soon as it finishes, and the tables are rewritten: a rerun with
the same ``--out`` reuses the scores of every detector whose settings and files (configs, the
files they name, checkpoints: by SHA-256 of their contents) are unchanged (``--fresh true``
recomputes them). A summary verdict drawn from a set of fewer than 100 images reads ``too few
images``. A config, checkpoint, budget, cap or ``--out`` that cannot work stops the command
with exit 2 before anything is trained (``--check_only true`` stops there in any case).

A model's ``config`` path is looked up as given (absolute, or relative to the current
directory), then relative to the benchmark YAML's directory and each of its ancestors, nearest
first; the package's own source tree is never searched. So ``configs/density/x.yaml`` in
``<tree>/configs/ood/y.yaml`` finds ``<tree>/configs/density/x.yaml`` from any directory.

The benchmark itself is library code, :mod:`lit_rev.evaluation.ood_benchmark`; this module is
its command line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from lightning.pytorch import LightningDataModule, seed_everything

from lit_rev.config import ConfigError
from lit_rev.evaluation.ood_benchmark import (
    STEM,
    BenchmarkEntry,
    BenchmarkError,
    FprConvention,
    check_out_dir,
    prepare,
    run_benchmark,
)

# The entries' classes register under their short names (class_path: DensityEntry ...).
from lit_rev.evaluation.ood_benchmark.entries import (  # noqa: F401
    ClassifierEntry,
    DensityEntry,
    WAICEntry,
)


def parser() -> ArgumentParser:
    """The command's options.

    A ``--config`` YAML gives any of them, ``data`` and ``detectors`` at least.
    """
    options = ArgumentParser(
        prog="python -m lit_rev.commands.ood_benchmark",
        description=__doc__.split("\n\n")[0],
        default_env=False,
    )
    options.add_argument("--config", action=ActionConfigFile, help="the benchmark's YAML")
    options.add_argument(
        "--data",
        type=LightningDataModule,
        required=True,
        help="the in-distribution DataModule with its OOD sets (a lit_rev config's data block)",
    )
    options.add_argument(
        "--detectors",
        type=list[BenchmarkEntry],
        required=True,
        help="DensityEntry, ClassifierEntry and WAICEntry entries (see their --help)",
    )
    options.add_argument(
        "--out",
        type=str | None,
        default=None,
        help="output directory (default: logs/ood_benchmark/<config stem>)",
    )
    options.add_argument("--seed", type=int, default=0, help="seeds everything before each step")
    options.add_argument(
        "--torch_threads",
        type=int | None,
        default=None,
        help="torch.set_num_threads (small models on few cores are often fastest with 1)",
    )
    options.add_argument(
        "--max_images",
        type=int | None,
        default=None,
        help="cap on every test set (seeded; --data.init_args.max_train caps the training "
        "images that classifier detectors fit on)",
    )
    options.add_argument(
        "--ckpt_paths",
        type=dict[str, str],
        default={},
        help="checkpoints by model name (a WAIC member: <name>/<i>), e.g. "
        "--ckpt_paths.glow logs/glow/version_0/checkpoints/last.ckpt; overrides the YAML's",
    )
    options.add_argument(
        "--train_overrides",
        type=list[str],
        default=[],
        help="--key=value overrides of every training run, after each model's own "
        "(e.g. ['--trainer.max_steps=2'] for a smoke test)",
    )
    options.add_argument(
        "--fpr_convention",
        type=FprConvention,
        default="in",
        help="the FPR@95 of the summary, heat map and target: 'in' measures the TPR on the "
        "in-distribution set (ODIN, energy, KNN papers; column fpr_at_95_tpr), 'openood' on "
        "the OOD set (OpenOOD v1.5; column fpr_at_95_tpr_openood); the table holds both",
    )
    options.add_argument(
        "--ood_groups",
        type=dict[str, list[str]] | None,
        default=None,
        help="OOD sets by group, each set in one group, e.g. {near: [cifar100], far: [mnist, "
        "svhn]}: each group's mean is a row and summary column mean_<group> beside mean",
    )
    options.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda, cuda:1 ...")
    options.add_argument("--progress", type=bool, default=True, help="progress bars")
    options.add_argument(
        "--fresh", type=bool, default=False, help="recompute every detector's scores"
    )
    options.add_argument(
        "--check_only",
        type=bool,
        default=False,
        help="parse, build every model without training and check it fits the data; then stop",
    )
    return options


def _plain(value):
    return value.as_dict() if isinstance(value, Namespace) else value


def run(args: Namespace, parsed: ArgumentParser) -> tuple[list[dict], list[str]]:
    """Run the benchmark of parsed ``args``; returns the table's rows and the failures."""
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    configs = list(args.config or []) if args.get("config") else []
    config_path = configs[0] if configs else None
    stem = Path(str(config_path)).stem if config_path else STEM
    out = Path(args.out or Path("logs") / "ood_benchmark" / stem)
    check_out_dir(out)
    search_dirs = [Path(getattr(c, "absolute", str(c))).parent for c in configs]
    seed_everything(args.seed, verbose=False)
    built = parsed.instantiate_classes(args)
    benchmark = prepare(
        built.data,
        list(built.detectors),
        [_plain(raw) for raw in args.detectors],
        _plain(args.data),
        ckpt_paths=dict(args.ckpt_paths),
        search_dirs=search_dirs,
        seed=args.seed,
        max_images=args.max_images,
        train_overrides=list(args.train_overrides),
        config=str(config_path) if config_path else None,
        fpr_convention=args.fpr_convention,
        ood_groups=dict(args.ood_groups) if args.ood_groups else None,
    )
    if args.check_only:
        data = benchmark.data
        print(
            f"{len(benchmark.entries)} detectors fit the data ({', '.join(benchmark.labels())}); "
            f"sets {data.names}"
        )
        return [], []
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    return run_benchmark(benchmark, out, device, fresh=args.fresh, progress=args.progress)


def main(argv: list[str] | None = None) -> list[dict]:
    """The command line (see the module docstring); exits 1 where a cell is missing.

    Returns:
        The table's rows.
    """
    options = parser()
    args = options.parse_args(argv)
    try:
        rows, failures = run(args, options)
    except (BenchmarkError, ConfigError) as error:
        options.error(str(error))
    if failures:
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()

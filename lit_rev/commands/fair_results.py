"""Fit fairness configs over several seeds and write the results tables (mean ± std).

    python -m lit_rev.commands.fair_results --config configs/fair/grad_pred_adult.yaml --seeds 5
    python -m lit_rev.commands.fair_results \
        --config configs/fair/vanilla_adult.yaml configs/fair/grad_pred_adult.yaml \
        --seeds 5 --out results/fair/adult
    python -m lit_rev.commands.fair_results \
        --config configs/fair/grad_auto_adult.yaml+configs/fair/grad_auto_adult_classifier.yaml

``A.yaml+B.yaml`` chains two stages: ``A`` is fitted, then ``B`` is fitted and tested with
``--model.init_args.encoder_ckpt`` set to ``A``'s final checkpoint (GRAD-auto). Seed ``i``
(0..seeds-1) sets both ``seed_everything`` and the DataModule's ``seed`` (validation split,
and the train/test split of German and COMPAS). Any further ``--a.b=c`` arguments override
every run's config. Writes ``<out>/<name>.{md,csv,json}`` (one row per config, ``mean ± std`` cells,
plus ``_mean``/``_std`` numeric columns in the CSV/JSON) and ``<out>/<name>_seeds.*`` (every run,
rewritten after each run so a stopped command keeps what it finished). The std is the sample
std over seeds (``n/a`` for one seed); a seed whose value is not finite is left out of its
cell, which then says how many seeds it holds.

Every config (each stage of a chain, with the extra arguments) is parsed and instantiated
before the first run: a typo in the last config stops the command at once, not after the
others have trained.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lit_rev.callbacks import sigterm_exits_nonzero
from lit_rev.config import ConfigError, instantiate_with_trainer
from lit_rev.fair.results import HEADLINE, headline, summarise
from lit_rev.report import format_table, write_report


def stage_args(config: str, seed: int, log_root: Path) -> list[str]:
    """The overrides of one stage of one run, applied after its ``config``.

    The seed of ``seed_everything`` and of the DataModule, and a log directory of its own,
    ``<log_root>/<config stem>/seed_<seed>``.
    """
    return [
        f"--seed_everything={seed}",
        f"--data.init_args.seed={seed}",
        f"--trainer.logger.init_args.save_dir={log_root}",
        f"--trainer.logger.init_args.name={Path(config).stem}",
        f"--trainer.logger.init_args.version=seed_{seed}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


def check_configs(entries: list[str], extra: list[str], log_root: Path) -> None:
    """Parse and instantiate every config of ``entries``; exit naming the first bad one.

    Each stage of an ``A+B`` chain is checked with the ``extra`` arguments, before anything is
    trained. A parser error (the offending key and value) is printed to stderr first.
    """
    for entry in entries:
        for config in entry.split("+"):
            if not Path(config).is_file():
                raise SystemExit(f"--config {entry}: {config} does not exist; nothing was run")
            try:
                instantiate_with_trainer(config, stage_args(config, 0, log_root) + extra)
            except ConfigError as error:
                print(f"error: {error}", file=sys.stderr, flush=True)
                raise SystemExit(
                    f"--config {entry}: {config} does not parse (the error is above); "
                    "nothing was run"
                ) from error
            except Exception as error:
                raise SystemExit(
                    f"--config {entry}: {config} does not instantiate: "
                    f"{type(error).__name__}: {error}; nothing was run"
                ) from error


def run_once(configs: list[str], seed: int, extra: list[str], log_root: Path) -> dict[str, float]:
    """Fit and test one config (or a chain of two) at one seed; return the test results.

    Each stage is built by :func:`lit_rev.config.instantiate_with_trainer` as
    ``python -m lit_rev fit`` builds it, with :func:`stage_args` and then ``extra`` as
    overrides; the second stage of a chain gets the first's final checkpoint as
    ``--model.init_args.encoder_ckpt``.
    """
    checkpoint = None
    results: dict[str, float] = {}
    for stage, config in enumerate(configs):
        overrides = stage_args(config, seed, log_root)
        if checkpoint is not None:
            overrides.append(f"--model.init_args.encoder_ckpt={checkpoint}")
        trainer, model, datamodule = instantiate_with_trainer(config, overrides + extra)
        with sigterm_exits_nonzero():  # a preempted job must not exit 0
            trainer.fit(model, datamodule=datamodule)
            if stage < len(configs) - 1:
                checkpoint = str(log_root / Path(config).stem / f"seed_{seed}" / "final.ckpt")
                trainer.save_checkpoint(checkpoint)
            else:
                trainer.test(model, datamodule=datamodule, verbose=False)
                results = dict(model.test_results)
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    """The command: check every config, run each over the seeds, write and print the tables."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.fair_results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config", nargs="+", required=True, help="config files; A.yaml+B.yaml chains two stages"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (small nets run erratically with more)",
    )
    parser.add_argument("--out", default="results/fair")
    parser.add_argument(
        "--name", default=None, help="file stem of the table (default: the first config's)"
    )
    args, extra = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    name = args.name or Path(args.config[0].split("+")[-1]).stem
    meta = {
        "seeds": args.seeds,
        "threads": args.threads,
        "configs": args.config,
        "extra_args": extra,
    }
    check_configs(args.config, extra, out / "logs")
    summary, numeric_rows, every_run = [], [], []
    for entry in args.config:
        chain = entry.split("+")
        label = Path(chain[-1]).stem
        runs = []
        for seed in range(args.seeds):
            started = time.time()
            results = headline(run_once(chain, seed, extra, out / "logs"))
            results["seconds"] = time.time() - started
            runs.append(results)
            every_run.append({"config": label, "seed": seed, **results})
            print(
                f"[{label} seed {seed}] "
                + ", ".join(
                    f"{k}={results[k]:.4f}" for k in (*HEADLINE, "positive_rate") if k in results
                ),
                flush=True,
            )
            write_report(every_run, out, f"{name}_seeds", meta=meta)
        row, numeric = summarise(label, runs)
        summary.append(row)
        numeric_rows.append({"config": label, **numeric})
    write_report(summary, out, name, meta=meta)
    write_report(numeric_rows, out, f"{name}_numeric", meta=meta)
    write_report(every_run, out, f"{name}_seeds", meta=meta)
    print(
        format_table(
            [
                {
                    k: v
                    for k, v in r.items()
                    if k.split("_")[0] in HEADLINE or k in ("config", "seeds", "positive_rate")
                }
                for r in summary
            ]
        )
    )
    print(
        f"written to {out}/{name}.md (+ .csv, .json, _numeric.*, _seeds.*); "
        f"torch threads: {args.threads}"
    )
    return summary


if __name__ == "__main__":
    main()

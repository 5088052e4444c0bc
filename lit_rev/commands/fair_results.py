"""Fit fairness configs over several seeds and write the results tables (mean ± std, 95% CI).

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
every run's config; ``--stageK:a.b=c`` overrides stage ``K`` of a chain only (1 = ``A``), e.g.
``--stage1:model.init_args.lambda_=4`` for GRAD-auto's auto-encoder. Writes
``<out>/<name>.{md,csv,json}`` (one row per config, ``mean ± std`` cells,
plus ``_mean``/``_std`` numeric columns in the CSV/JSON) and ``<out>/<name>_seeds.*`` (every run,
rewritten after each run so a stopped command keeps what it finished). The std is the sample
std over seeds (``n/a`` for one seed); a seed whose value is not finite is left out of its
cell, which then says how many seeds it holds.

Every cell is ``mean ± std [low, high]``: the mean and sample std over seeds, then the 95%
bootstrap interval of that mean over resamples of the test rows (1,000 seeded resamples per
run, :mod:`lit_rev.fair.bootstrap`; each run's own interval is in ``_seeds``). A run whose
test positive rate is 0 or 1 *collapsed* (a constant predictor): its ``status`` in
``_seeds`` says so, the ``collapsed`` column counts such seeds, and its fairness numbers are
left out of the cells (see :mod:`lit_rev.fair.results`). ``<out>/<name>_groups.*`` holds the
per-group table (n, base rate, positive rate, accuracy, TPR, FPR) of every run and its mean
± std over seeds.

Tuned rows: ``--chosen <config>_chosen.json ...`` takes the hyper-parameters that
``python -m lit_rev.commands.fair_search`` chose on the validation split; each file adds a
row ``<config stem>, tuned`` run with its overrides (after the extra arguments). The
reporting seeds (``--seed_start`` .. ``--seed_start + --seeds - 1``) must be disjoint from the
seeds the search used, else the command stops before any run:

    python -m lit_rev.commands.fair_results --seeds 5 \
        --chosen results/fair/search/grad_pred_adult_chosen.json

Every config (each stage of a chain, with the extra arguments) is parsed and instantiated
before the first run: a typo in the last config stops the command at once, not after the
others have trained.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lit_rev.callbacks import sigterm_exits_nonzero
from lit_rev.config import ConfigError, instantiate_with_trainer
from lit_rev.fair.results import (
    HEADLINE,
    collapse_status,
    headline,
    headline_replicates,
    mean_std,
    summarise,
)
from lit_rev.report import format_table, write_report


@dataclass
class RunResult:
    """What one test run leaves: its metrics, per-group rows and bootstrap replicates."""

    results: dict[str, float]
    groups: list[dict] = field(default_factory=list)
    bootstrap: dict = field(default_factory=dict)


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


STAGE_SCOPED = re.compile(r"^--stage(\d+):(.+)$")


def stage_extra(extra: list[str], stage: int, stages: int) -> list[str]:
    """The extra arguments that reach stage ``stage`` (0-based) of a run of ``stages`` stages.

    A plain ``--a.b=c`` reaches every stage; ``--stageK:a.b=c`` (``K`` from 1) reaches stage
    ``K`` only, as ``--a.b=c``. A ``K`` the run does not have stops the command.
    """
    kept = []
    for arg in extra:
        scoped = STAGE_SCOPED.match(arg)
        if scoped is None:
            kept.append(arg)
            continue
        number = int(scoped.group(1))
        if not 1 <= number <= stages:
            raise SystemExit(
                f"{arg}: this run has {stages} stage(s), so stage{number} does not exist "
                "(stage1 is A of A.yaml+B.yaml, stage2 is B)"
            )
        if number == stage + 1:
            kept.append("--" + scoped.group(2))
    return kept


def check_configs(entries: list[str], extra: list[str], log_root: Path) -> None:
    """Parse and instantiate every config of ``entries``; exit naming the first bad one.

    Each stage of an ``A+B`` chain is checked with the ``extra`` arguments, before anything is
    trained. A parser error (the offending key and value) is printed to stderr first.
    """
    for entry in entries:
        chain = entry.split("+")
        for stage, config in enumerate(chain):
            if not Path(config).is_file():
                raise SystemExit(f"--config {entry}: {config} does not exist; nothing was run")
            try:
                instantiate_with_trainer(
                    config, stage_args(config, 0, log_root) + stage_extra(extra, stage, len(chain))
                )
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

    :func:`run_full` with its ``results`` alone.
    """
    return run_full(configs, seed, extra, log_root).results


def fit_chain(configs: list[str], seed: int, extra: list[str], log_root: Path, then):
    """Fit one config (or a chain of two) at one seed; return ``then(trainer, model, data)``.

    Each stage is built by :func:`lit_rev.config.instantiate_with_trainer` as
    ``python -m lit_rev fit`` builds it, with :func:`stage_args` and then ``extra`` as
    overrides; the second stage of a chain gets the first's final checkpoint as
    ``--model.init_args.encoder_ckpt``. ``then`` runs on the last stage, fitted (testing it
    for the results, validating it for the search).
    """
    checkpoint = None
    for stage, config in enumerate(configs):
        overrides = stage_args(config, seed, log_root)
        if checkpoint is not None:
            overrides.append(f"--model.init_args.encoder_ckpt={checkpoint}")
        trainer, model, datamodule = instantiate_with_trainer(
            config, overrides + stage_extra(extra, stage, len(configs))
        )
        with sigterm_exits_nonzero():  # a preempted job must not exit 0
            trainer.fit(model, datamodule=datamodule)
            if stage < len(configs) - 1:
                checkpoint = str(log_root / Path(config).stem / f"seed_{seed}" / "final.ckpt")
                trainer.save_checkpoint(checkpoint)
            else:
                return then(trainer, model, datamodule)
    raise ValueError("fit_chain needs at least one config")


def run_full(configs: list[str], seed: int, extra: list[str], log_root: Path) -> RunResult:
    """Fit and test one config (or a chain of two) at one seed; return what the test left.

    See :func:`fit_chain` for how the stages are built.
    """

    def test(trainer, model, datamodule) -> RunResult:
        trainer.test(model, datamodule=datamodule, verbose=False)
        return RunResult(
            dict(model.test_results),
            list(getattr(model, "test_groups", [])),
            dict(getattr(model, "test_bootstrap", {})),
        )

    return fit_chain(configs, seed, extra, log_root, test)


def read_chosen(paths: list[str]) -> list[dict]:
    """The entries of ``fair_search``'s ``*_chosen.json`` files; exit naming a bad one."""
    entries = []
    for path in paths:
        try:
            chosen = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(
                f"--chosen {path}: cannot read it ({error}); nothing was run"
            ) from error
        missing = [k for k in ("config", "overrides", "search_seeds") if k not in chosen]
        if missing:
            raise SystemExit(
                f"--chosen {path}: lacks {missing}; give a file written by "
                "python -m lit_rev.commands.fair_search; nothing was run"
            )
        entries.append(chosen)
    return entries


def group_summary(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds of each (config, attribute, group)'s per-group rates."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["config"], row["attribute"], row["group"]), []).append(row)
    out = []
    for (config, attribute, group), runs in cells.items():
        entry = {"config": config, "attribute": attribute, "group": group, "seeds": len(runs)}
        for column in ("n", "base_rate", "positive_rate", "accuracy", "tpr", "fpr"):
            entry[column] = mean_std([r[column] for r in runs])[0]
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    """The command: check every config, run each over the seeds, write and print the tables."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.fair_results", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config", nargs="+", default=[], help="config files; A.yaml+B.yaml chains two stages"
    )
    parser.add_argument(
        "--chosen",
        nargs="+",
        default=[],
        help="*_chosen.json files of python -m lit_rev.commands.fair_search: tuned rows",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--seed_start", type=int, default=0, help="first reporting seed (seeds are consecutive)"
    )
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
    if not args.config and not args.chosen:
        parser.error("give --config, --chosen or both")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    # (entry, its own overrides, label, log root): plain configs, then tuned ones
    rows = [(entry, [], Path(entry.split("+")[-1]).stem, out / "logs") for entry in args.config]
    chosen_files = dict(zip(args.chosen, read_chosen(args.chosen), strict=True))
    for path, chosen in chosen_files.items():
        seen = sorted(set(chosen["search_seeds"]) & set(seeds))
        if seen:
            raise SystemExit(
                f"--chosen {path}: the search used seeds {seen}, which are also reporting seeds "
                f"{seeds[0]}..{seeds[-1]}; report on unseen seeds with "
                f"--seed_start {max(chosen['search_seeds']) + 1} (or search on other seeds); "
                "nothing was run"
            )
        label = Path(chosen["config"].split("+")[-1]).stem + ", tuned"
        rows.append((chosen["config"], list(chosen["overrides"]), label, out / "logs" / "tuned"))
    name = args.name or Path(rows[0][0].split("+")[-1]).stem
    meta = {
        "seeds": seeds,
        "threads": args.threads,
        "configs": args.config,
        "chosen": chosen_files,
        "extra_args": extra,
        "interval": "95% percentile bootstrap of the mean over seeds, resampling test rows",
    }
    for entry, overrides, _, log_root in rows:
        check_configs([entry], extra + overrides, log_root)
    summary, numeric_rows, every_run, group_rows = [], [], [], []
    for entry, overrides, label, log_root in rows:
        chain = entry.split("+")
        runs, replicates = [], []
        for seed in seeds:
            started = time.time()
            outcome = run_full(chain, seed, extra + overrides, log_root)
            results = headline(outcome.results)
            results["seconds"] = time.time() - started
            runs.append(results)
            replicates.append(headline_replicates(outcome.bootstrap, outcome.results))
            every_run.append(
                {"config": label, "seed": seed, "status": collapse_status(results), **results}
            )
            group_rows += [{"config": label, "seed": seed, **g} for g in outcome.groups]
            print(
                f"[{label} seed {seed}] "
                + ", ".join(
                    f"{k}={results[k]:.4f}" for k in (*HEADLINE, "positive_rate") if k in results
                )
                + ("" if collapse_status(results) == "ok" else " COLLAPSED"),
                flush=True,
            )
            write_report(every_run, out, f"{name}_seeds", meta=meta)
        row, numeric = summarise(label, runs, replicates)
        if overrides:
            row["tuned"] = " ".join(overrides)
        summary.append(row)
        numeric_rows.append({"config": label, **numeric})
    write_report(summary, out, name, meta=meta)
    write_report(numeric_rows, out, f"{name}_numeric", meta=meta)
    write_report(every_run, out, f"{name}_seeds", meta=meta)
    if group_rows:
        write_report(group_rows + group_summary(group_rows), out, f"{name}_groups", meta=meta)
        print(format_table(group_summary(group_rows)))
    shown = ("config", "seeds", "collapsed", "positive_rate", "tuned")
    print(
        format_table(
            [
                {
                    k: v
                    for k, v in r.items()
                    if k.split("_")[0] in HEADLINE or k in shown or k.startswith("di_ratio")
                }
                for r in summary
            ]
        )
    )
    print(
        f"written to {out}/{name}.md (+ .csv, .json, _numeric.*, _seeds.*, _groups.*); "
        f"torch threads: {args.threads}"
    )
    return summary


if __name__ == "__main__":
    main()

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

A row is labelled by its last config's stem. Two configs of one file name (``a/x.yaml`` and
``b/x.yaml``) get the shortest labels that tell them apart (``a/x``, ``b/x``) and a log
directory each; the same config given twice is refused. ``--seeds`` below 1 is refused before
anything is touched, and every result file is replaced whole (written to a temporary name,
then renamed), so an interrupted command never leaves an empty or truncated table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lit_rev.evaluation.fair_runs import (
    check_configs,
    distinct_labels,
    label_forms,
    log_root_of,
    run_full,
)
from lit_rev.fair.results import (
    HEADLINE,
    collapse_status,
    group_summary,
    headline,
    headline_replicates,
    summarise,
)
from lit_rev.report import format_table, write_report


def stem_of(entry: str) -> str:
    """The stem of an entry's last config: ``a/x.yaml+b/y.yaml`` -> ``y``."""
    return Path(entry.split("+")[-1]).stem


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
    if args.seeds < 1:
        parser.error(
            f"--seeds {args.seeds}: give at least 1 (the number of seeds each config runs); "
            "nothing was run and no result file was touched"
        )
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    try:
        labels = distinct_labels([label_forms(entry) for entry in args.config])
    except ValueError as error:
        parser.error(f"--config: {error}; nothing was run")
    # (entry, its own overrides, label, log root): plain configs, then tuned ones
    rows = [
        (entry, [], label, log_root_of(out / "logs", label, stem_of(entry)))
        for entry, label in zip(args.config, labels, strict=True)
    ]
    chosen_files = dict(zip(args.chosen, read_chosen(args.chosen), strict=True))
    tuned_labels = distinct_labels(
        [[*label_forms(chosen["config"]), path] for path, chosen in chosen_files.items()]
    )
    for path, chosen in chosen_files.items():
        seen = sorted(set(chosen["search_seeds"]) & set(seeds))
        if seen:
            raise SystemExit(
                f"--chosen {path}: the search used seeds {seen}, which are also reporting seeds "
                f"{seeds[0]}..{seeds[-1]}; report on unseen seeds with "
                f"--seed_start {max(chosen['search_seeds']) + 1} (or search on other seeds); "
                "nothing was run"
            )
        label = tuned_labels.pop(0)
        log_root = log_root_of(out / "logs" / "tuned", label, stem_of(chosen["config"]))
        rows.append((chosen["config"], list(chosen["overrides"]), label + ", tuned", log_root))
    name = args.name or stem_of(rows[0][0])
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

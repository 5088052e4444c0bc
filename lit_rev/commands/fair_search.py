"""Choose a fairness config's hyper-parameters on the validation split, for fair_results.

    python -m lit_rev.commands.fair_search --config configs/fair/grad_pred_adult.yaml \
        --grid model.init_args.lambda_=1,3,6,10 --grid model.init_args.adversary_steps=1,5 \
        --max_discrimination 0.036 --seeds 100 101 --out results/fair/search
    python -m lit_rev.commands.fair_results --seeds 5 \
        --chosen results/fair/search/grad_pred_adult_chosen.json

Every point of the grid (the Cartesian product of the ``--grid key=v1,v2`` lists; separate
values by ``|`` instead when they hold commas, e.g. ``model.init_args.hidden=[64,64]|[128]``)
(a key ``stageK:a.b`` reaches stage ``K`` of an ``A.yaml+B.yaml`` chain only, e.g.
``stage1:model.init_args.lambda_=1,4,10`` for GRAD-auto) is fitted at every search seed, as
``fair_results`` fits a config (same seeding: seed ``i`` sets
``seed_everything`` and the DataModule's ``seed``; ``A.yaml+B.yaml`` chains), and then
*validated*: its final weights are scored on the validation split with ``val/accuracy``,
``val/discrimination_<attribute>`` and ``val/positive_rate``. The test split is never read.

``--quantity hard`` reads the validation gap of the predicted labels
(``val/discrimination_hard_<attribute>``) instead of the soft one of the probabilities, so a
search can be done on the same quantity as the table it feeds. ``--val_folds K`` validates
each grid point and seed on each of the K folds of the non-test rows (the tabular
DataModules' ``val_folds``/``val_fold``) and averages over the folds: on a small set (German's
validation split is 70 rows) a choice then rests on every non-test row, not on one split. The
chosen overrides never carry the fold options: reporting runs train on the usual split.

The selection rule, on the means over the search seeds (and folds):

- a grid point that collapsed at any search seed (validation positive rate 0 or 1) is out;
- ``--rule accuracy`` (the default): among the points whose mean validation discrimination
  of ``--attribute`` (default: the first protected attribute) is at most
  ``--max_discrimination``, the one with the highest mean validation accuracy. When no point
  meets the bound, the one with the lowest mean validation discrimination, and the chosen
  file says ``"met_bound": false``;
- ``--rule delta``: the highest mean validation accuracy − discrimination (no bound);
- ties go to the point listed first in the grid.

The search seeds (default 100 and 101) must differ from the seeds that report the test
numbers (``fair_results`` uses 0..4 by default and refuses chosen files whose search seeds it
would reuse). Writes ``<out>/<config stem>_search.{md,csv,json}`` (every grid point: its
overrides, per-seed and mean validation numbers, whether it was eligible and chosen) and
``<out>/<config stem>_chosen.json``: the chosen ``overrides`` (the extra ``--a.b=c``
arguments given to the search, then the grid point's, so ``fair_results`` reproduces the
searched setting), ``search_seeds``, the rule and the validation numbers. Each point is
checked (parsed and instantiated) before the first fit, and so is ``--attribute``: it must be
one of the data's protected attributes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lit_rev.evaluation.fair_runs import check_configs, fit_chain, protected_attributes
from lit_rev.report import atomic_open, format_table, write_report

RULES = ("accuracy", "delta")
#: The validation gap a search reads: of the probabilities (Zemel's) or of the labels.
QUANTITIES = ("soft", "hard")


def discrimination_key(attribute: str, quantity: str) -> str:
    """The logged validation metric of ``attribute``'s gap in ``quantity``."""
    return f"val/discrimination_{'hard_' if quantity == 'hard' else ''}{attribute}"


def attributes_of(metrics: dict[str, float]) -> list[str]:
    """The protected attributes whose validation gap ``metrics`` reports."""
    prefix = "val/discrimination_"
    return [
        k[len(prefix) :]
        for k in metrics
        if k.startswith(prefix)
        and not k.startswith(prefix + "hard_")
        and not k.startswith(prefix + "soft_")
    ]


def fold_overrides(folds: int | None) -> list[list[str]]:
    """The extra overrides of each validation fold (one empty list without folds)."""
    if folds is None:
        return [[]]
    return [
        [f"--data.init_args.val_folds={folds}", f"--data.init_args.val_fold={k}"]
        for k in range(folds)
    ]


def parse_grid(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["a.b=1,2", "c=x|y,z"]`` -> ``[("a.b", ["1", "2"]), ("c", ["x", "y,z"])]``.

    A leading ``--`` on the key is dropped. Values split on ``|`` when there is one, else on
    commas.
    """
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.removeprefix("--")
        split = [v.strip() for v in values.split("|" if "|" in values else ",")]
        if not sep or not key or not all(split):
            raise SystemExit(
                f"--grid {spec!r}: write it as key=value1,value2 (e.g. "
                "model.init_args.lambda_=1,3,6; separate by | when values hold commas)"
            )
        if key in (k for k, _ in grid):
            raise SystemExit(f"--grid {spec!r}: {key} is given twice; give each key once")
        grid.append((key, split))
    return grid


def grid_points(grid: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Every combination of the grid's values as override lists (``--key=value``), in order."""
    keys = [k for k, _ in grid]
    return [
        [f"--{k}={v}" for k, v in zip(keys, values, strict=True)]
        for values in itertools.product(*(v for _, v in grid))
    ]


def validate(trainer, model, datamodule) -> dict[str, float]:
    """The fitted model's validation metrics (``val/...``), from its final weights."""
    if getattr(datamodule, "val_set", True) is None:
        raise SystemExit(
            "the search needs a validation split, and this DataModule has none: set "
            "--data.init_args.val_fraction to a value above 0 (e.g. 0.1)"
        )
    (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in metrics.items()}


def choose(candidates: list[dict], rule: str, max_discrimination: float | None) -> tuple[int, bool]:
    """The index of the chosen candidate and whether it met the bound (see the module).

    Each candidate has ``accuracy``, ``discrimination`` (means over the search seeds) and
    ``collapsed`` (at any seed). Exits when every candidate collapsed.
    """
    alive = [i for i, c in enumerate(candidates) if not c["collapsed"]]
    if not alive:
        raise SystemExit(
            "every grid point collapsed to a constant predictor (validation positive rate 0 "
            "or 1) at some search seed; nothing can be chosen: widen the grid (e.g. a smaller "
            "lambda_) or train longer"
        )
    if rule == "delta":
        best = max(alive, key=lambda i: candidates[i]["accuracy"] - candidates[i]["discrimination"])
        return best, True
    eligible = [i for i in alive if candidates[i]["discrimination"] <= max_discrimination]
    if eligible:
        return max(eligible, key=lambda i: candidates[i]["accuracy"]), True
    return min(alive, key=lambda i: candidates[i]["discrimination"]), False


def rule_text(rule: str, attribute: str | None, bound: float | None, quantity: str = "soft") -> str:
    """The selection rule in words, for the tables and the chosen file."""
    gap = f"discrimination_{quantity} ({attribute})"
    if rule == "delta":
        return f"max mean validation accuracy - {gap}; collapsed points out"
    return (
        f"max mean validation accuracy subject to mean validation {gap} "
        f"<= {bound}; collapsed points out; if none meets the bound, min discrimination"
    )


def main(argv: list[str] | None = None) -> dict:
    """The command: check every grid point, fit and validate each, choose, write the files."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.fair_search", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", required=True, help="a config file; A.yaml+B.yaml chains")
    parser.add_argument(
        "--grid",
        action="append",
        required=True,
        help="key=v1,v2 (dotted config key); repeat for more keys",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[100, 101],
        help="search seeds; keep them apart from the reporting seeds (fair_results: 0..4)",
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="accuracy",
        help="accuracy: max val accuracy s.t. val discrimination <= bound; delta: max val "
        "accuracy - discrimination",
    )
    parser.add_argument(
        "--max_discrimination",
        type=float,
        default=None,
        help="the bound of --rule accuracy on mean validation discrimination",
    )
    parser.add_argument(
        "--attribute", default=None, help="protected attribute of the bound (default: first)"
    )
    parser.add_argument(
        "--quantity",
        choices=QUANTITIES,
        default="soft",
        help="the validation gap the rule reads: soft (probabilities) or hard (labels)",
    )
    parser.add_argument(
        "--val_folds",
        type=int,
        default=None,
        help="validate on each of K folds of the non-test rows and average (small sets)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--out", default="results/fair/search", help="where the search and chosen files go"
    )
    args, extra = parser.parse_known_args(argv)
    if args.rule == "accuracy" and args.max_discrimination is None:
        parser.error("--rule accuracy needs --max_discrimination (e.g. 0.036), or use --rule delta")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds {args.seeds}: give each seed once")
    if args.val_folds is not None and args.val_folds < 2:
        parser.error(f"--val_folds {args.val_folds}: give 2 or more folds (or leave it out)")
    folds = fold_overrides(args.val_folds)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    stem = Path(args.config.split("+")[-1]).stem
    points = grid_points(parse_grid(args.grid))
    log_root = out / "logs"
    for point in points:
        for fold in folds:
            check_configs([args.config], extra + point + fold, log_root)
    if args.attribute is not None:
        protected = protected_attributes(args.config, extra + points[0], log_root)
        if args.attribute not in protected:
            parser.error(
                f"--attribute {args.attribute}: the data of {args.config} protects "
                f"{protected} only; pick one of them (nothing was fitted)"
            )

    rows, candidates = [], []
    attribute = args.attribute
    for number, point in enumerate(points):
        per_seed = []
        for seed in args.seeds:
            started = time.time()
            per_fold = []
            for fold in folds:
                metrics = fit_chain(
                    args.config.split("+"),
                    seed,
                    extra + point + fold,
                    log_root / f"point_{number}",
                    validate,
                )
                names = attributes_of(metrics)
                attribute = attribute or names[0]
                key = discrimination_key(attribute, args.quantity)
                if key not in metrics:
                    raise SystemExit(
                        f"--attribute {attribute} --quantity {args.quantity}: the model reports "
                        f"no {key} (attributes: {names}); pick one of them"
                    )
                rate = metrics.get("val/positive_rate", math.nan)
                per_fold.append((metrics["val/accuracy"], metrics[key], rate))
            rate = float(np.mean([f[2] for f in per_fold]))
            per_seed.append(
                {
                    "accuracy": float(np.mean([f[0] for f in per_fold])),
                    "discrimination": float(np.mean([f[1] for f in per_fold])),
                    "positive_rate": rate,
                    "collapsed": any(f[2] in (0.0, 1.0) for f in per_fold),
                }
            )
            print(
                f"[{stem} point {number} seed {seed}] {' '.join(point)}: "
                f"val accuracy {per_seed[-1]['accuracy']:.4f}, val discrimination "
                f"({attribute}) {per_seed[-1]['discrimination']:.4f}, positive rate {rate:.3f}"
                f" ({time.time() - started:.0f} s)",
                flush=True,
            )
        candidate = {
            "accuracy": float(np.mean([r["accuracy"] for r in per_seed])),
            "discrimination": float(np.mean([r["discrimination"] for r in per_seed])),
            "collapsed": any(r["collapsed"] for r in per_seed),
        }
        candidates.append(candidate)
        row = {"point": number, "overrides": " ".join(point)}
        for seed, r in zip(args.seeds, per_seed, strict=True):
            row[f"val_accuracy_seed_{seed}"] = r["accuracy"]
            row[f"val_discrimination_seed_{seed}"] = r["discrimination"]
            row[f"val_positive_rate_seed_{seed}"] = r["positive_rate"]
        row["val_accuracy"] = candidate["accuracy"]
        row["val_discrimination"] = candidate["discrimination"]
        row["collapsed"] = candidate["collapsed"]
        rows.append(row)
    best, met_bound = choose(candidates, args.rule, args.max_discrimination)
    for number, row in enumerate(rows):
        meets = args.rule == "delta" or (
            candidates[number]["discrimination"] <= args.max_discrimination
        )
        row["eligible"] = bool(meets and not candidates[number]["collapsed"])
        row["chosen"] = number == best
    rule = rule_text(args.rule, attribute, args.max_discrimination, args.quantity)
    chosen = {
        "config": args.config,
        "overrides": extra + points[best],
        "grid_point": points[best],
        "search_seeds": args.seeds,
        "rule": rule,
        "max_discrimination": args.max_discrimination,
        "attribute": attribute,
        "quantity": args.quantity,
        "val_folds": args.val_folds,
        "met_bound": met_bound,
        "validation": {
            "accuracy": candidates[best]["accuracy"],
            "discrimination": candidates[best]["discrimination"],
        },
    }
    meta = {
        "config": args.config,
        "seeds": args.seeds,
        "rule": rule,
        "quantity": args.quantity,
        "val_folds": args.val_folds,
        "extra_args": extra,
    }
    write_report(rows, out, f"{stem}_search", meta=meta)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / f"{stem}_chosen.json") as f:
        f.write(json.dumps(chosen, indent=2) + "\n")
    shown = ("point", "overrides", "val_accuracy", "val_discrimination", "collapsed", "chosen")
    print(format_table([{k: r[k] for k in shown} for r in rows], digits=4))
    print(f"rule: {rule}")
    if not met_bound:
        print(
            f"warning: no grid point met validation discrimination <= {args.max_discrimination}; "
            "chose the least discriminating one",
            file=sys.stderr,
        )
    print(
        f"chosen: {' '.join(points[best]) or '(the config as it is)'}; written to "
        f"{out}/{stem}_chosen.json (+ {stem}_search.md, .csv, .json). Report it on unseen "
        f"seeds: python -m lit_rev.commands.fair_results --chosen {out}/{stem}_chosen.json"
    )
    return chosen


if __name__ == "__main__":
    main()

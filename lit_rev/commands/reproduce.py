"""Rerun the experiments behind the published numbers and rewrite (or check) their result files.

    python -m lit_rev.commands.reproduce NAME [NAME ...] | --all [--quick]
    python -m lit_rev.commands.reproduce --check NAME [NAME ...]   # rerun, compare, write nothing
    python -m lit_rev.commands.reproduce --stale                     # files whose code changed
    python -m lit_rev.commands.reproduce --list

Each experiment runs the project's own commands (``python -m lit_rev ...``) in a fresh
subprocess, in a work directory (``--work_dir``, default ``logs/reproduce``), reads the files
they wrote and stores the values with their provenance in ``results/<name>.json``
(:mod:`lit_rev.result_files`). ``--check`` compares a rerun with the committed file: exactly
where the file was made with the same versions, CPU and threads (the runs are deterministic
there), else within the tolerance the file states, and prints every difference; it exits 1 on
any. Render the docs from the files afterwards with ``python -m lit_rev.commands.docs``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_rev.evaluation import experiments
from lit_rev.evaluation.experiments import check, run_experiment
from lit_rev.result_files import RESULTS_DIR, is_stale, read_result, write_result


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.reproduce", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "names", nargs="*", help=f"experiments: {', '.join(experiments.EXPERIMENTS)}"
    )
    parser.add_argument("--all", action="store_true", help="every experiment")
    parser.add_argument("--quick", action="store_true", help="with --all: the quick ones only")
    parser.add_argument("--check", action="store_true", help="rerun and compare; write nothing")
    parser.add_argument("--stale", action="store_true", help="list result files that are stale")
    parser.add_argument("--list", action="store_true", help="list the experiments")
    parser.add_argument("--root", default=".", help="the repository root (configs/, results/)")
    parser.add_argument("--work_dir", default="logs/reproduce")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    results = root / RESULTS_DIR
    unknown = [n for n in args.names if n not in experiments.EXPERIMENTS]
    if unknown:
        parser.error(
            f"unknown experiment(s) {unknown}; choose from {sorted(experiments.EXPERIMENTS)}"
        )
    if args.list:
        for e in experiments.EXPERIMENTS.values():
            print(f"{e.name:28s} {e.kind:5s} {e.title}")
        return 0
    if args.stale:
        stale = []
        for e in experiments.EXPERIMENTS.values():
            path = results / f"{e.name}.json"
            status = "missing" if not path.is_file() else None
            if status is None:
                status = "stale" if is_stale(read_result(path), root) else "current"
            if status != "current":
                stale.append(e.name)
            print(f"{e.name:28s} {e.kind:5s} {status}")
        return 0
    if args.all:
        chosen = [
            e for e in experiments.EXPERIMENTS.values() if e.kind == "quick" or not args.quick
        ]
    else:
        chosen = [experiments.EXPERIMENTS[n] for n in args.names]
    if not chosen:
        parser.error("name experiments, or give --all, --stale or --list")
    work = Path(args.work_dir).resolve()
    failed = 0
    for experiment in chosen:
        document = run_experiment(experiment, root, work)
        path = results / f"{experiment.name}.json"
        if args.check:
            found = check(experiment, document, read_result(path))
            for line in found:
                print(f"[{experiment.name}] differs: {line}")
            print(
                f"[{experiment.name}] {'DIFFERS' if found else 'matches'} {path} "
                f"({len(found)} difference{'s' if len(found) != 1 else ''})",
                flush=True,
            )
            failed += bool(found)
        else:
            write_result(path, document)
            print(f"[{experiment.name}] wrote {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Fit and test (or validate) fairness configs at a seed, as ``python -m lit_rev fit`` builds them.

The runner of ``python -m lit_rev.commands.fair_results``, ``fair_search`` and the GRAD plane of
``python -m lit_rev.commands.figures``. It sits above the slices because it builds runs from
YAML configs with :func:`lit_rev.config.instantiate_with_trainer`, which the fairness slice
may not import.

A run is one config or a chain of two (``A.yaml+B.yaml``: ``B`` fitted on the frozen encoder
of ``A``, GRAD-auto). Seed ``i`` sets both ``seed_everything`` and the DataModule's ``seed``;
each stage logs to ``<log_root>/<config stem>/seed_<seed>``. Extra ``--a.b=c`` arguments
reach every stage, ``--stageK:a.b=c`` stage ``K`` only (1 = ``A``).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lit_rev.callbacks import sigterm_exits_nonzero
from lit_rev.config import ConfigError, instantiate_with_trainer


@dataclass
class RunResult:
    """What one test run leaves: its metrics, per-group rows and bootstrap replicates."""

    results: dict[str, float]
    groups: list[dict] = field(default_factory=list)
    bootstrap: dict = field(default_factory=dict)


def label_forms(entry: str) -> list[str]:
    """Ever longer names of a run, for labels that tell apart configs of one file name.

    The last config's stem, then the stem with ever more of its (absolute) path, then the
    chain's stems joined by ``+``, then every stage's absolute path.

    Args:
        entry: a config, or ``A.yaml+B.yaml``.

    Returns:
        The names, shortest first.
    """
    chain = [Path(os.path.abspath(c)).with_suffix("") for c in entry.split("+")]
    parts = chain[-1].parts
    forms = [Path(*parts[-k:]).as_posix() for k in range(1, len(parts) + 1)]
    forms.append("+".join(c.name for c in chain))
    forms.append("+".join(c.as_posix() for c in chain))
    return forms


def distinct_labels(forms: list[list[str]]) -> list[str]:
    """One label per run: its first form, or the first form that tells it from its namesakes.

    Args:
        forms: each run's names, shortest first (see :func:`label_forms`).

    Returns:
        The labels, all different.

    Raises:
        ValueError: two runs share every form (the same run twice), naming the label.
    """
    labels = [f[0] for f in forms]
    for label in dict.fromkeys(labels):
        group = [i for i, other in enumerate(labels) if other == label]
        if len(group) == 1:
            continue
        for level in range(max(len(forms[i]) for i in group)):
            names = [forms[i][min(level, len(forms[i]) - 1)] for i in group]
            if len(set(names)) == len(names):
                for i, name in zip(group, names, strict=True):
                    labels[i] = name
                break
        else:
            raise ValueError(f"{label} is given {len(group)} times; give each run once")
    return labels


def log_root_of(root: Path, label: str, stem: str) -> Path:
    """Where a run labelled ``label`` logs: ``root``, or a directory of its own under it.

    A run whose label is its config's ``stem`` logs under ``root`` itself; a namesake's longer
    label gets its own directory, so two configs of one file name never share their logs.

    Args:
        root: the command's log directory.
        label: the run's label (see :func:`distinct_labels`).
        stem: the stem of the run's last config.

    Returns:
        The run's ``log_root``.
    """
    if label == stem:
        return root
    return root / re.sub(r"[^\w.-]+", "_", label).strip("_")


def stage_args(config: str, seed: int, log_root: Path) -> list[str]:
    """The overrides of one stage of one run, applied after its ``config``.

    The seed of ``seed_everything`` and of the DataModule, and a log directory of its own,
    ``<log_root>/<config stem>/seed_<seed>``.

    Args:
        config: the stage's YAML file.
        seed: the run's seed.
        log_root: the directory the run's logs go under.

    Returns:
        ``--key=value`` overrides.
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

    Args:
        extra: the command's extra arguments.
        stage: the stage, from 0.
        stages: how many stages the run has.

    Returns:
        The arguments of that stage, in order.
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

    Args:
        entries: configs, ``A.yaml+B.yaml`` for a chain.
        extra: the extra arguments of every run.
        log_root: where the runs would log.
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


def protected_attributes(entry: str, extra: list[str], log_root: Path) -> list[str]:
    """The protected attributes of the data of ``entry``'s last stage, as its config builds it.

    The names the model reports discrimination for (``val/discrimination_<name>``); built
    without fitting anything, so a command can check an attribute before its first fit.

    Args:
        entry: a config, or ``A.yaml+B.yaml``.
        extra: the extra arguments of the run.
        log_root: where the run would log.

    Returns:
        The DataModule's ``protected`` names (empty if it has none).
    """
    chain = entry.split("+")
    config = chain[-1]
    _, _, datamodule = instantiate_with_trainer(
        config, stage_args(config, 0, log_root) + stage_extra(extra, len(chain) - 1, len(chain))
    )
    return list(getattr(datamodule, "protected", None) or [])


def run_once(configs: list[str], seed: int, extra: list[str], log_root: Path) -> dict[str, float]:
    """Fit and test one config (or a chain of two) at one seed; return the test results.

    :func:`run_full` with its ``results`` alone.

    Args:
        configs: the stages' YAML files, in order.
        seed: the run's seed.
        extra: the extra arguments (see :func:`stage_extra`).
        log_root: the directory the run's logs go under.

    Returns:
        The model's test results.
    """
    return run_full(configs, seed, extra, log_root).results


def fit_chain(configs: list[str], seed: int, extra: list[str], log_root: Path, then):
    """Fit one config (or a chain of two) at one seed; return ``then(trainer, model, data)``.

    Each stage is built by :func:`lit_rev.config.instantiate_with_trainer` as
    ``python -m lit_rev fit`` builds it, with :func:`stage_args` and then ``extra`` as
    overrides; the second stage of a chain gets the first's final checkpoint as
    ``--model.init_args.encoder_ckpt``. ``then`` runs on the last stage, fitted (testing it
    for the results, validating it for the search).

    Args:
        configs: the stages' YAML files, in order.
        seed: the run's seed.
        extra: the extra arguments (see :func:`stage_extra`).
        log_root: the directory the run's logs go under.
        then: called with the last stage's trainer, model and DataModule once fitted.

    Returns:
        What ``then`` returns.
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

    Args:
        configs: the stages' YAML files, in order.
        seed: the run's seed.
        extra: the extra arguments (see :func:`stage_extra`).
        log_root: the directory the run's logs go under.

    Returns:
        The test results, per-group rows and bootstrap replicates.
    """

    def test(trainer, model, datamodule) -> RunResult:
        trainer.test(model, datamodule=datamodule, verbose=False)
        return RunResult(
            dict(model.test_results),
            list(getattr(model, "test_groups", [])),
            dict(getattr(model, "test_bootstrap", {})),
        )

    return fit_chain(configs, seed, extra, log_root, test)

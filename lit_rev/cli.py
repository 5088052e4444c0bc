"""The one command line of lit_rev: ``python -m lit_rev fit|validate|test|predict --config x.yaml``.

LightningCLI in subclass mode: ``model`` may be any ``LightningModule`` and ``data`` any
``LightningDataModule``, named in YAML by ``class_path``; the project's own classes resolve
by their short names (``DensityModule``, ``ImageDataModule``, ``Glow``, ...). The parser set-up
lives in :mod:`lit_rev.config`, which the analyses and command modules use to read the same
configs; nothing imports this module but ``python -m lit_rev`` (and the tests).

Every run gets the callbacks of :mod:`lit_rev.callbacks` by default (a YAML that lists its
own callback of one of these kinds replaces that default): ``last.ckpt`` every
``--checkpoint_every_n_steps`` steps and at epoch ends, a checkpoint when a signal or an
exception stops ``fit`` (SIGTERM exits 143), a CSV of per-image predictions for ``predict``,
and the run's config saved without overwriting files of other runs. ``validate``, ``test`` and
``predict`` refuse to score the untrained model the config builds unless given
``--ckpt_path`` or ``--allow_untrained true``.
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from lit_rev.callbacks import sigterm_exits_nonzero
from lit_rev.config import ConfigBuilder, ConfigError, fit_mismatch_message
from lit_rev.fit_checks import FitMismatch

EVALUATING = ("validate", "test", "predict")


class LitRevCLI(ConfigBuilder):
    """The command line: :class:`lit_rev.config.ConfigBuilder` plus the exit codes of a run.

    The parser, its defaults (subclass mode, seed 0, TensorBoard logs), ``--torch_threads``,
    ``--checkpoint_every_n_steps``, ``--allow_untrained`` and the default callbacks are
    :class:`~lit_rev.config.ConfigBuilder`'s, shared with :func:`lit_rev.config.instantiate`.
    This class refuses to score an untrained model and exits nonzero where a run failed in a
    way Lightning would exit 0 on: a SIGTERM stop (143) or an OOD evaluation with non-finite
    scores (1). Arguments as ``LightningCLI`` without the model and data classes.
    """

    def __init__(self, *args, **kwargs):
        # LightningCLI runs the subcommand inside __init__ (unless run=False).
        try:
            with sigterm_exits_nonzero():  # Lightning's SIGTERM stop would otherwise exit 0
                super().__init__(*args, **kwargs)
        except FitMismatch as error:  # the model names its arguments; the user wrote YAML keys
            raise ConfigError(fit_mismatch_message(error)) from error
        self._exit_if_the_evaluation_failed()

    def before_instantiate_classes(self) -> None:
        """Set the thread count, and refuse to score an untrained model (see ``--help``)."""
        config = self.run_config()
        no_file = str(config.get("ckpt_path") or "") in ("", "last", "best")
        if self.subcommand in EVALUATING and no_file:
            self._refuse_untrained(config)  # before a run directory is claimed
        super().before_instantiate_classes()

    def _refuse_untrained(self, config) -> None:
        """Exit 2 where an evaluation would score random weights, unless asked for.

        ``test`` without ``--ckpt_path`` scores random weights and prints the paper's table as
        if it were a result: refused unless asked for (or a ``fast_dev_run`` smoke test).

        ``--ckpt_path last`` is refused too: in a new process Lightning looks for ``last.ckpt`` in
        this run's own, new checkpoint directory, finds none, warns and scores random weights.
        """
        given = config.get("ckpt_path")
        how = "without --ckpt_path"
        if given:
            how = f"with --ckpt_path={given} (no previous fit in this process)"
        what = (
            f"`{self.subcommand}` {how} scores the untrained model that the config builds "
            "(random weights): its numbers mean nothing"
        )
        if config.get("allow_untrained"):
            rank_zero_warn(f"{what}; going ahead because --allow_untrained is set")
        elif (config.get("trainer") or {}).get("fast_dev_run"):
            rank_zero_warn(f"{what}; going ahead for this fast_dev_run smoke test")
        else:
            print(
                f"error: {what}. Pass the file: --ckpt_path=<run dir>/checkpoints/last.ckpt "
                "(written by `fit`), or --allow_untrained=true to score random weights "
                "on purpose.",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)

    def _exit_if_the_evaluation_failed(self) -> None:
        """Exit 1 where a density evaluation found non-finite scores.

        The report then says "THE RUN FAILED"; a script or a scheduler that reads only the exit
        code must see it too.
        """
        trainer = getattr(self, "trainer", None)
        reporters = [getattr(self, "model", None), *(getattr(trainer, "callbacks", None) or [])]
        failed = [f for r in reporters for f in (getattr(r, "ood_failures", None) or [])]
        if failed:
            print(
                f"error: the OOD evaluation failed: {'; '.join(failed)}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)


def main(args: list[str] | None = None) -> LitRevCLI:
    """Run ``python -m lit_rev`` with ``args`` (default: ``sys.argv``); returns the CLI.

    A DDP run's process group is destroyed once the subcommand is done: left to the interpreter's
    exit, gloo's threads were torn down in an order that aborted a finished 2-process run now and
    then ("terminate called without an active exception", exit status 134).
    """
    cli = LitRevCLI(args=args)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return cli


if __name__ == "__main__":
    main()

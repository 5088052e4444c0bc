"""Callbacks every ``python -m lit_rev`` run gets by default.

``lit_rev.config.ConfigBuilder`` adds them to every Trainer it builds.

- :class:`LastCheckpoint`: Lightning's ``ModelCheckpoint(save_last=True)`` (epoch ends), plus
  ``last.ckpt`` every ``every_n_steps`` optimiser steps, so a run killed mid-epoch loses at
  most that many steps.
- :class:`FaultCheckpoint`: a run stopped by a signal (SIGTERM from SLURM or ``docker stop``,
  Ctrl+C) or by an exception first writes ``checkpoints/on_exception.ckpt`` and says how to
  resume from it.
- :class:`PredictionWriter`: ``predict`` writes one CSV row per image (set, index and every
  per-image column of the module's ``predict_step``) into the run's directory.
- :class:`RunConfigSaver`: saves the run's ``config.yaml`` in the run's directory; with no
  logger, under a name that does not exist yet (never over a file of another run).
- :class:`StepBoundProgressBar`, :class:`SummaryWithoutUnmeasuredFlops` and
  :func:`quiet_third_party_noise`: terminal output without misleading or empty lines.

One more is opt-in (listed in a YAML's ``trainer.callbacks``): :class:`CompileNetwork`, which
runs the module's network through ``torch.compile``.

Two more are opt-in as well: :class:`CPUTimeBudget` (a training budget in CPU seconds) and
:class:`PolyakAveraging` (the moving average of the weights is what gets evaluated).

Split by concern into submodules; every class is re-exported here, so ``class_path:
lit_rev.callbacks.<Class>`` (or the short name) names it. Nothing here imports a slice
(``lit_rev.density`` ...): the slices may import these callbacks.
"""

from lit_rev.callbacks.averaging import PolyakAveraging
from lit_rev.callbacks.budget import CPUTimeBudget
from lit_rev.callbacks.checkpoints import (
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    FaultCheckpoint,
    LastCheckpoint,
    UnreadableCheckpoint,
    sigterm_exits_nonzero,
)
from lit_rev.callbacks.compile import (
    COMPILED_METHODS,
    NETWORK_ATTRIBUTES,
    CompileNetwork,
    network_attributes,
)
from lit_rev.callbacks.predictions import PredictionWriter, per_image_columns
from lit_rev.callbacks.run_config import RunConfigSaver
from lit_rev.callbacks.run_files import free_path, output_path, run_dir
from lit_rev.callbacks.terminal import (
    StepBoundProgressBar,
    SummaryWithoutUnmeasuredFlops,
    quiet_third_party_noise,
)

__all__ = [
    "COMPILED_METHODS",
    "NETWORK_ATTRIBUTES",
    "SIGTERM_EXIT_CODE",
    "AtomicCheckpointIO",
    "CPUTimeBudget",
    "CompileNetwork",
    "FaultCheckpoint",
    "LastCheckpoint",
    "PolyakAveraging",
    "PredictionWriter",
    "RunConfigSaver",
    "StepBoundProgressBar",
    "SummaryWithoutUnmeasuredFlops",
    "UnreadableCheckpoint",
    "free_path",
    "network_attributes",
    "output_path",
    "per_image_columns",
    "quiet_third_party_noise",
    "run_dir",
    "sigterm_exits_nonzero",
]

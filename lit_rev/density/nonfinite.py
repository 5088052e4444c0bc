"""What a density model's training does on a NaN/inf loss: stop, or skip the step.

``DensityModule(nonfinite=...)``: ``"raise"`` stops with an error naming the step and the fix;
``"skip"`` skips the step on every rank together, warns, counts it in the module's
``skipped_steps`` buffer (kept in checkpoints), and stops once ``max_consecutive_skips`` steps in
a row were skipped (a diverged model only skips).
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn

FIX = "lower the learning rate, lengthen warmup_steps or set trainer.gradient_clip_val"


def finite_on_every_rank(module, loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every process of the run (one decision for all ranks)."""
    finite = bool(torch.isfinite(loss))
    if module.trainer.world_size > 1:
        finite = module.trainer.strategy.reduce_boolean_decision(finite, all=True)
    return finite


def skip_nonfinite_step(module, loss: torch.Tensor) -> None:
    """Count, log and warn about a skipped step; raise where the module's policy says stop.

    Raises:
        FloatingPointError: under ``nonfinite="raise"``, or after ``max_consecutive_skips``
            skipped steps in a row.
    """
    step, hparams = module.global_step, module.hparams
    if hparams.nonfinite == "raise":
        raise FloatingPointError(
            f"non-finite loss ({loss.item()}) at step {step}: {FIX}; "
            "nonfinite='skip' skips such steps"
        )
    module.skipped_steps += 1
    module.consecutive_skips += 1
    in_a_row, total = module.consecutive_skips, int(module.skipped_steps)
    limit = hparams.max_consecutive_skips
    module.log("train/skipped_steps", module.skipped_steps.float())
    if in_a_row >= limit:
        raise FloatingPointError(
            f"non-finite loss ({loss.item()}) at step {step}: {in_a_row} steps in a row skipped "
            f"({total} in all; max_consecutive_skips = {limit}), the model has diverged: {FIX}"
        )
    rank_zero_warn(
        f"non-finite loss ({loss.item()}) at step {step}: step skipped ({in_a_row} in a row, "
        f"{total} in all; training stops after {limit} in a row, max_consecutive_skips)"
    )


def warn_skipped_steps(module) -> None:
    """At the end of training, warn how many steps were skipped, if any."""
    if int(module.skipped_steps):
        rank_zero_warn(
            f"{int(module.skipped_steps)} of {module.global_step} training steps were skipped "
            "for a non-finite loss (nonfinite='skip'); the model was trained on the others only"
        )

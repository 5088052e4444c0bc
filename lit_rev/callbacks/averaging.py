"""Polyak averaging of the weights, which are then the ones evaluated: :class:`PolyakAveraging`."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class PolyakAveraging(WeightAveraging):
    """Polyak averaging: an exponential moving average of the weights, used at evaluation.

    The average is what the model is evaluated with wherever it is evaluated (openai/glow's and
    openai/pixel-cnn's ``polyak`` option).

    After every optimizer step ``theta_avg <- decay * theta_avg + (1 - decay) * theta`` (the
    first step copies ``theta``). The averaged weights are the ones evaluated:

    * validation: swapped in for each validation run of ``fit`` (its bits/dim and the sample
      grid the module logs) and swapped back after;
    * after training: swapped in at ``on_train_end``, so :class:`~lit_rev.density.OODEvaluation`
      (``on_fit_end``) and a ``trainer.test`` after ``fit`` score them;
    * checkpoints: ``state_dict`` holds the averaged weights (what ``test --ckpt_path``,
      ``predict`` and the analyses load); the training weights go to ``current_model_state``
      and the number of averaged steps to ``averaging_state``, so a resumed ``fit`` continues
      both. This holds also for a checkpoint written while the averaged weights are swapped
      in (a signal or an exception during validation or after training).

    Only parameters are averaged. Buffers (ActNorm's and WeightNorm's ``initialized`` flags, the
    skipped-step count, fixed permutations) are the training model's own, in the module and in
    every checkpoint: an average of a flag or a count means nothing.

    Built on Lightning's ``WeightAveraging``, with these changes: buffers are not averaged
    (Lightning's ``EMAWeightAveraging`` averages them, so an integer count stops rising); the
    average lives on the model's device (Lightning creates it in ``setup``, before the model
    moves to the GPU, and would copy every step through the CPU); the swap bookkeeping above;
    no warning when ``test``/``predict`` load a checkpoint (its ``state_dict`` is the average).
    A ``ModelCheckpoint(save_weights_only=True)`` skips callback hooks and stores whatever
    weights the module holds at that moment.

    Args:
        decay: weight of the old average per step, in ``[0, 1)`` (openai/glow: about 0.999,
            openai/pixel-cnn: 0.9995).
    """

    def __init__(self, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"PolyakAveraging decay must be in [0, 1) (e.g. 0.999), got {decay}")
        super().__init__(use_buffers=False, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        # True while the module holds the averaged parameters and the average the training ones
        self._swapped = False
        self._swapped_for_validation = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Create the average (Lightning's setup); a new ``fit`` starts with nothing swapped."""
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._swapped = self._swapped_for_validation = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Move the average to the module's device (the strategy has placed the module)."""
        if self._device is None and self._average_model is not None:
            self._average_model.to(pl_module.device)  # the strategy has moved the module by now

    def _swap_models(self, pl_module: LightningModule) -> None:
        """Exchange the module's parameters with the averaged ones (buffers stay in place)."""
        assert self._average_model is not None
        with torch.no_grad():
            pairs = zip(
                self._average_model.module.parameters(), pl_module.parameters(), strict=True
            )
            for average, current in pairs:
                tmp = average.detach().clone()
                average.copy_(current.detach())
                current.copy_(tmp)
        self._swapped = not self._swapped

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Swap the averaged weights in for a validation run of ``fit``."""
        fitting = trainer.state.fn == TrainerFn.FITTING
        if self._average_model is not None and fitting and not self._swapped:
            self._swap_models(pl_module)
            self._swapped_for_validation = True

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Keep the average in: the module's own hook (the sample grid) runs after this one."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Swap the training weights back after a validation run of ``fit``."""
        if self._swapped_for_validation:
            self._swap_models(pl_module)
            self._swapped_for_validation = False

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Leave the module holding the average, for the evaluations after training."""
        if self._average_model is not None and not self._swapped:
            self._swap_models(pl_module)
            n = int(self._average_model.n_averaged)
            rank_zero_info(
                f"PolyakAveraging: the model now holds the moving average of its "
                f"weights over {n} steps (decay {self.decay})"
            )

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        """Store the average as ``state_dict``, the training weights and the count beside it."""
        if self._average_model is None:
            return  # outside fit: the module's weights are stored as they are
        module_state = checkpoint["state_dict"]
        other = {name: p.detach() for name, p in self._average_model.module.named_parameters()}
        missing = [name for name in other if name not in module_state]
        if missing:
            raise RuntimeError(
                f"PolyakAveraging: parameters {missing[:3]} are missing from the "
                "checkpoint's state_dict"
            )
        other_state = {**module_state, **other}  # the other parameters, this module's buffers
        if self._swapped:
            averaged, current = module_state, other_state
        else:
            averaged, current = other_state, module_state
        checkpoint["state_dict"] = averaged
        checkpoint["current_model_state"] = current
        n_averaged = self._average_model.n_averaged.detach().clone()
        checkpoint["averaging_state"] = {"n_averaged": n_averaged}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        """On a resumed ``fit``, restore the average and give the module its training weights."""
        if self._average_model is None or trainer.state.fn != TrainerFn.FITTING:
            return  # test/predict/validate: the module was loaded from state_dict, the average
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            # the module holds state_dict (the average) by now: the average gets it, the module
            # gets back the training weights
            self._average_model.module.load_state_dict(checkpoint["state_dict"])
            self._average_model.n_averaged.copy_(checkpoint["averaging_state"]["n_averaged"])
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn(
                "PolyakAveraging: the checkpoint holds no averaged weights; the "
                "average starts from its weights"
            )
            self._average_model.module.load_state_dict(checkpoint["state_dict"])

"""``DensityModule``: trains and evaluates any density network on quantised images.

Input convention (one for every model). Batches hold integer images ``k`` in
``[0, 2**n_bits)``. A network declares ``likelihood``:

* ``"density"`` (flows): ``log_prob`` takes the continuous image ``x = (k + u) / 2**n_bits - 1/2``
  (uniform dequantisation, ``u ~ U[0, 1)`` in training; the cell centre ``u = 1/2`` at
  evaluation unless ``eval_noise=True``, so per-image scores are deterministic) and
  returns a log-density;
* ``"mass"`` (discrete models: :class:`~lit_rev.density.PixelCNNPP`, :class:`~lit_rev.density.VAE`):
  ``log_prob`` takes ``k`` (int64) and returns ``log P(k)`` (the VAE: a lower bound on it, the
  ELBO in training and the importance-weighted bound at evaluation).

Both become bits/dim by :func:`~lit_rev.density.metrics.bits_per_dim`. OOD scores beyond
bits/dim (:mod:`lit_rev.density.scores`) are given as ``ood_scores`` and reported as AUROC
next to raw bits/dim by the same test run.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn as nn
from lightning.pytorch import LightningModule

from lit_rev.density.fit import check_checkpoint_fit, check_fit, trained_on
from lit_rev.density.metrics import BitsPerDim, Likelihood, bits_per_dim
from lit_rev.density.nonfinite import finite_on_every_rank, skip_nonfinite_step, warn_skipped_steps
from lit_rev.density.ood_evaluation import write_density_report
from lit_rev.density.samples import draws_samples, sample_grid
from lit_rev.density.scores import OODScore, perturb_images
from lit_rev.options import check_choice

#: The optimiser's name (``adamax`` as openai/glow); :data:`OPTIMIZERS` maps it to its class.
Optimizer = Literal["adam", "adamax", "adamw"]
#: What a NaN/inf training loss does: stop with an error, or skip the step.
Nonfinite = Literal["raise", "skip"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "adamw": torch.optim.AdamW}


class DensityModule(LightningModule):
    """Maximum-likelihood training of a density ``network``; bits/dim and the OOD report.

    One module for every model family, so flows and discrete models are trained, scored and
    compared in the same units (bits/dim) and by the same OOD evaluation on ``test``.

    Args:
        network: an ``nn.Module`` with ``log_prob`` and ``likelihood`` (``"density"``/``"mass"``).
        lr: peak learning rate (after the warm-up).
        optimizer: ``"adamax"`` (as openai/glow), ``"adam"`` or ``"adamw"``.
        weight_decay: the optimiser's weight decay (L2 for Adam/Adamax, decoupled for AdamW).
        warmup_steps: linear learning-rate warm-up (Glow diverges without it).
        lr_decay: after the warm-up, the learning rate is multiplied by this factor at every
            optimizer step (``lr * lr_decay**(step + 1 - warmup_steps)``; PixelCNN++'s reference
            uses 0.999995); 1.0 keeps it constant.
        n_bits: quantisation depth, 1..8; ``None`` takes the DataModule's (or 8). When a
            DataModule is attached, ``setup`` checks that it agrees with the DataModule's, and
            that the network's shape (and its own ``n_bits``, if it has one) fit the data.
        eval_noise: dequantise with noise at evaluation too (default: cell centres).
        nonfinite: ``"raise"`` stops with a clear error on a NaN/inf loss; ``"skip"`` skips the
            step (on all DDP ranks together), warns with its step and loss, and counts it in
            ``train/skipped_steps``.
        max_consecutive_skips: under ``nonfinite="skip"``, this many skipped steps in a row
            stop training with the same error as ``"raise"`` (a diverged model only skips).
        num_samples: samples in the grid logged to TensorBoard every validation epoch
            (``0``: none; networks with ``sequential_sampling`` skip it under ``fast_dev_run``).
        temperature: the sampling temperature of that grid.
        ood_scores: OOD scores (:mod:`lit_rev.density.scores`) computed with bits/dim on ``test``
            and by :class:`~lit_rev.density.OODEvaluation`, each reported as AUROC per OOD set.
        perturb: train on inputs whose pixels are each replaced by a uniform random value with
            this probability: the background model of the likelihood ratio (Ren et al. 2019).
    """

    def __init__(
        self,
        network: nn.Module,
        lr: float = 1e-3,
        optimizer: Optimizer = "adamax",
        weight_decay: float = 0.0,
        warmup_steps: int = 500,
        lr_decay: float = 1.0,
        n_bits: int | None = None,
        eval_noise: bool = False,
        nonfinite: Nonfinite = "raise",
        max_consecutive_skips: int = 20,
        num_samples: int = 16,
        temperature: float = 0.7,
        ood_scores: list[OODScore] | None = None,
        perturb: float = 0.0,
    ):
        super().__init__()
        check_choice("optimizer", optimizer, Optimizer)
        check_choice("nonfinite", nonfinite, Nonfinite)
        likelihood = getattr(network, "likelihood", None)
        if likelihood not in get_args(Likelihood) or not hasattr(network, "log_prob"):
            raise TypeError(
                f"{type(network).__name__} needs a log_prob method and "
                "likelihood = 'density' or 'mass'"
            )
        if not 0.0 <= perturb <= 1.0:
            raise ValueError(f"perturb must be in [0, 1], got {perturb}")
        if not 0.0 < lr_decay <= 1.0:
            raise ValueError(
                f"lr_decay must be in (0, 1] (a per-step factor, e.g. 0.999995), got {lr_decay}"
            )
        if max_consecutive_skips < 1:
            raise ValueError(
                f"max_consecutive_skips must be at least 1, got {max_consecutive_skips}"
            )
        self.save_hyperparameters(ignore=["network", "ood_scores"])
        self.ood_scores: list[OODScore] = list(ood_scores or [])
        self.network = network
        self.n_bits = n_bits
        self.train_bpd = BitsPerDim()
        self.val_bpd = BitsPerDim()
        self.register_buffer("skipped_steps", torch.tensor(0))
        self.consecutive_skips = 0
        self._test_scores: dict[int, dict[str, list[torch.Tensor]]] = {}
        self.trained_on: dict | None = None  # the loaded checkpoint's record of its data
        self.ood_failures: list[str] = []  # non-finite scores of the last test, for the exit code

    @property
    def n_bits(self) -> int:
        """The quantisation depth of the images.

        The one given; else the attached DataModule's, the network's own, or 8. Set it to fix
        the depth outside a Trainer (e.g. to the DataModule's, when analysing a checkpoint).
        """
        if self._n_bits is None:
            dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            return int(getattr(dm, "n_bits", None) or getattr(self.network, "n_bits", None) or 8)
        return self._n_bits

    @property
    def n_bits_given(self) -> int | None:
        """The depth set on this module (argument or setter); ``None`` where it follows the data."""
        return self._n_bits

    @n_bits.setter
    def n_bits(self, value: int | None) -> None:
        if value is not None and not (float(value) == int(value) and 1 <= int(value) <= 8):
            raise ValueError(
                f"n_bits must be an integer in 1..8 (images are uint8) or None, got {value}"
            )
        self._n_bits = None if value is None else int(value)

    def use_datamodule(self, dm) -> None:
        """Take from ``dm`` what an attached DataModule gives, for use without a Trainer.

        Within a Trainer an unset ``n_bits`` follows the attached DataModule's; a module built
        outside one (by :func:`lit_rev.config.instantiate`, to analyse a checkpoint) is given
        ``dm`` here and then scores images of that depth as the run did.
        """
        data_bits = getattr(dm, "n_bits", None)
        if self._n_bits is None and data_bits is not None:
            self.n_bits = data_bits

    def setup(self, stage: str) -> None:
        """Check the network against the attached DataModule before any step (:meth:`check_fit`)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            self.check_fit(dm)

    def check_fit(self, dm) -> None:
        """Raise :class:`~lit_rev.fit_checks.FitMismatch` where the network does not fit ``dm``.

        See :func:`lit_rev.density.fit.check_fit`.
        """
        check_fit(self, dm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record what the model is trained on (depth, image shape, data set) in ``checkpoint``."""
        checkpoint["trained_on"] = trained_on(self, self._datamodule())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Keep the checkpoint's record, checked against the data when a loop starts."""
        self.trained_on = checkpoint.get("trained_on")

    def on_fit_start(self) -> None:
        """A resumed or evaluated checkpoint must fit the data (its depth, its image shape)."""
        check_checkpoint_fit(self.trained_on, self._datamodule())

    on_validation_start = on_test_start = on_predict_start = on_fit_start

    def _datamodule(self):
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    @property
    def likelihood(self) -> Likelihood:
        """The network's ``likelihood``: ``"density"`` (flows) or ``"mass"`` (discrete models)."""
        return self.network.likelihood

    def model_input(self, k: torch.Tensor, noise: bool) -> torch.Tensor:
        """The network's input for integer images ``k`` (see the module docstring)."""
        if self.likelihood == "mass":
            return k.long()
        u = (
            torch.rand_like(k, dtype=torch.float32)
            if noise
            else torch.full_like(k, 0.5, dtype=torch.float32)
        )
        return (k.float() + u) / 2**self.n_bits - 0.5

    def scores(self, k: torch.Tensor, noise: bool = False) -> dict[str, torch.Tensor]:
        """Per-image bits/dim and, for flows, its density and volume parts (``(N,)`` each)."""
        x = self.model_input(k, noise)
        dims = k[0].numel()
        if hasattr(self.network, "log_prob_parts"):
            log_pz, log_det = self.network.log_prob_parts(x)
            prior = bits_per_dim(log_pz, dims, self.n_bits, self.likelihood)
            volume = bits_per_dim(log_det, dims, 0, "mass")
            return {"bpd": prior + volume, "prior_bpd": prior, "logdet_bpd": volume}
        return {"bpd": bits_per_dim(self.network.log_prob(x), dims, self.n_bits, self.likelihood)}

    def test_scores(self, k: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`scores` at evaluation plus the per-image columns every OOD score needs."""
        scores = self.scores(k, noise=self.hparams.eval_noise)
        for scorer in self.ood_scores:
            scores.update(scorer.columns(self, k, scores))
        return scores

    def prepare_ood_scores(self, reference_loader=None, max_batches: int | None = None) -> None:
        """Let every OOD score fit what it needs before scoring.

        E.g. :class:`~lit_rev.density.Typicality`'s entropy estimate or
        :class:`~lit_rev.density.LikelihoodRatio`'s background model. ``reference_loader``
        defaults to the attached DataModule's validation (else training) split.
        """
        if reference_loader is None and self._trainer is not None and self.ood_scores:
            dm = getattr(self.trainer, "datamodule", None)
            if dm is not None and hasattr(dm, "val_dataloader"):
                dm.setup("fit")
                reference_loader = dm.val_dataloader() or dm.train_dataloader()
        for scorer in self.ood_scores:
            scorer.prepare(self, reference_loader, max_batches)

    def training_step(self, batch, batch_idx):
        """One maximum-likelihood step on a batch of integer images; returns the mean bits/dim."""
        k = batch[0]
        if self.hparams.perturb > 0:
            k = perturb_images(k, self.hparams.perturb, self.n_bits)
        bpd = self.scores(k, noise=True)["bpd"]
        loss = bpd.mean()
        if not finite_on_every_rank(self, loss):
            skip_nonfinite_step(self, loss)
            return None
        self.consecutive_skips = 0
        self.train_bpd(bpd)
        self.log("train/bpd", loss, prog_bar=True)
        self.log("train/bpd_epoch", self.train_bpd, on_step=False, on_epoch=True)
        return loss

    def on_train_end(self):
        """Warn how many steps were skipped for a non-finite loss, if any."""
        warn_skipped_steps(self)

    def validation_step(self, batch, batch_idx):
        """Accumulate the validation bits/dim (dequantised as at evaluation)."""
        self.val_bpd(self.scores(batch[0], noise=self.hparams.eval_noise)["bpd"])
        self.log("val/bpd", self.val_bpd, prog_bar=True)

    def on_validation_epoch_end(self):
        """Log the sample grid to TensorBoard (rank 0, not in the sanity check)."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        experiment = getattr(self.logger, "experiment", None)
        if draws_samples(self) and hasattr(experiment, "add_image"):
            experiment.add_image("samples", sample_grid(self), self.global_step)

    # ----- test: the OOD evaluation -----
    def on_test_epoch_start(self):
        """Reset the gathered scores and prepare the OOD scores."""
        self._test_scores = {}
        limit = self.trainer.limit_test_batches
        self.prepare_ood_scores(max_batches=limit if isinstance(limit, int) else None)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Score a batch of test set ``dataloader_idx`` and keep the per-image scores."""
        scores = self.test_scores(batch[0])
        store = self._test_scores.setdefault(dataloader_idx, {})
        for key, value in scores.items():
            store.setdefault(key, []).append(value.detach())
        name = f"test/bpd/{self._set_name(dataloader_idx)}"
        self.log(name, scores["bpd"].mean(), add_dataloader_idx=False, sync_dist=True)

    def on_test_epoch_end(self):
        """Gather every set's scores over the ranks and write the OOD report on rank 0."""
        gathered = {}
        for idx in sorted(self._test_scores):
            gathered[self._set_name(idx)] = {
                k: self.all_gather(torch.cat(v)).reshape(-1).cpu()
                for k, v in self._test_scores[idx].items()
            }
        if self.trainer.is_global_zero and gathered:
            _, self.ood_failures = write_density_report(self, gathered, self.trainer)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """Per-image scores of a batch of test set ``dataloader_idx``.

        ``bpd``, for flows its parts, the columns the OOD scores read and every per-image OOD
        score (``complexity``, ``typicality``, ...).
        """
        scores = self.test_scores(batch[0])
        for scorer in self.ood_scores:
            scores.update(scorer.per_image(scores))
        return {k: v.detach().cpu() for k, v in scores.items()}

    def on_predict_epoch_start(self):
        """Prepare the OOD scores before the first batch."""
        self.prepare_ood_scores()

    def _set_name(self, idx: int) -> str:
        names = getattr(self.trainer.datamodule, "test_names", None) if self._trainer else None
        return names[idx] if names and idx < len(names) else f"set{idx}"

    def lr_factor(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (from 0) over ``lr``.

        A linear warm-up to 1 at step ``warmup_steps - 1``, then a factor ``lr_decay`` per step.
        """
        warmup = max(1, self.hparams.warmup_steps)
        if step + 1 < warmup:
            return (step + 1) / warmup
        return self.hparams.lr_decay ** (step + 1 - warmup)

    def configure_optimizers(self):
        """The chosen optimiser, its learning rate scheduled per step by :meth:`lr_factor`.

        Its multi-tensor (``foreach``) implementation on every device: torch picks it by default
        on GPUs only, and on the CPU too it updates the many small parameter tensors of a flow in
        fewer kernel launches, with the same numbers to the bit.
        """
        opt = OPTIMIZERS[self.hparams.optimizer](
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            foreach=True,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_factor(step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

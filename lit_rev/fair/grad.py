"""GRAD: Gradient Reversal Against Discrimination (Raff & Sylvester 2018).

An encoder ``G_f`` maps ``x`` to a code ``z``. A target branch ``G_t`` reads ``z``: a label
classifier (``mode: pred``, GRAD-pred) or a decoder reconstructing ``x`` (``mode: auto``,
GRAD-auto). One adversarial head per protected attribute reads ``z`` *through the gradient
reversal layer*: the heads learn to predict the attributes, the encoder receives their
gradient times ``−λ`` and learns to hide them. One loss, one backward:

    L = L_t(G_t(z), target) + Σ_a L_a(G_a(R_λ(z)), s_a)

With ``lambda_: 0`` the heads still learn (a built-in probe) but pass no gradient to the
encoder: that is the Vanilla baseline, the same network without an adversary.

Stronger adversaries, beyond the paper: ``adversary_steps > 1`` gives the heads that many
updates per encoder update (the extra ones on the detached code), ``head_hidden`` sets their
width, and ``ramp: true`` follows DANN's schedule ``λ_p = λ (2/(1+exp(−γp)) − 1)``.
``lr_schedule: cosine`` anneals the encoder's and target's learning rate (not the heads')
to zero over training: with a constant rate the game keeps oscillating and the final
epoch's discrimination is a lottery (docs/fair.md shows how much); annealed, it settles while
the adversary keeps its full rate.
The extra adversary steps take their gradients with ``autograd.grad`` and average them over
processes by hand, so they work under DDP too.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn import functional as F

from lit_rev.fair.base import FairModule
from lit_rev.fair.networks import AttributeHeads, mlp
from lit_rev.fair.reversal import GradientReversal
from lit_rev.options import check_choice

#: What the target branch does with the code: classify the label, or reconstruct ``x``.
Mode = Literal["pred", "auto"]
#: The encoder's and target's learning rate: constant, or annealed to 0 by a cosine.
LRSchedule = Literal["constant", "cosine"]


class GRADModule(FairModule):
    """GRAD-pred / GRAD-auto / Vanilla.

    Args:
        mode: ``pred`` (target branch classifies the label) or ``auto`` (it reconstructs ``x``;
            a linear read-out trained on the *detached* code gives test-time numbers, and
            :class:`FrozenEncoderClassifier` is the proper second stage).
        hidden: encoder widths; the last one is the code size.
        head_hidden: hidden widths of each adversarial head.
        decoder_hidden: hidden widths of the GRAD-auto decoder (default: encoder's, reversed).
        lambda_: reversal strength λ; 0 gives the Vanilla baseline.
        ramp, gamma: DANN's λ schedule over training progress.
        adversary_steps: head updates per encoder update.
        lr, adversary_lr: Adam learning rates of encoder+target and of the heads.
        dropout: dropout in the encoder.
        weight_decay: Adam weight decay of encoder+target.
        lr_schedule: ``constant`` or ``cosine`` (the encoder and target anneal to 0, stepped
            once an epoch).
        **kwargs: :class:`~lit_rev.fair.base.FairModule`'s (probes, consistency_k, shapes).
    """

    def __init__(
        self,
        mode: Mode = "pred",
        hidden: list[int] = [64, 64],  # noqa: B006 (never mutated; a list reads best in YAML)
        head_hidden: list[int] = [64],  # noqa: B006
        decoder_hidden: list[int] | None = None,
        lambda_: float = 1.0,
        ramp: bool = False,
        gamma: float = 10.0,
        adversary_steps: int = 1,
        lr: float = 1e-3,
        adversary_lr: float | None = None,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        lr_schedule: LRSchedule = "constant",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("lr_schedule", lr_schedule, LRSchedule)
        check_choice("mode", mode, Mode)
        if adversary_steps < 1:
            raise ValueError("adversary_steps must be >= 1")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.reversal = GradientReversal(lambda_, ramp, gamma)
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Encoder, target branch (classifier or decoder + read-out) and adversarial heads."""
        hp = self.hparams
        self.encoder = mlp(
            input_dim, hp.hidden[:-1], hp.hidden[-1], hp.dropout, final_activation=True
        )
        code = hp.hidden[-1]
        if hp.mode == "pred":
            self.target = nn.Linear(code, 1)
        else:
            decoder_hidden = (
                hp.decoder_hidden
                if hp.decoder_hidden is not None
                else list(reversed(hp.hidden[:-1]))
            )
            self.target = mlp(code, decoder_hidden, input_dim)
            self.readout = nn.Linear(code, 1)  # trained on z.detach(): never shapes the code
        self.heads = AttributeHeads(code, protected_classes, hp.head_hidden)

    def representation(self, x: Tensor) -> Tensor:
        """The encoder's code ``z``."""
        return self.encoder(x)

    def predict_proba(self, x: Tensor) -> Tensor:
        """Positive-label probability from the classifier (``pred``) or the read-out (``auto``)."""
        z = self.encoder(x)
        logit = self.target(z) if self.hparams.mode == "pred" else self.readout(z)
        return torch.sigmoid(logit.squeeze(-1))

    def configure_optimizers(self):
        """Adam for encoder+target (+ read-out), Adam for the heads; the cosine on the first."""
        hp = self.hparams
        model_params = list(self.encoder.parameters()) + list(self.target.parameters())
        if hp.mode == "auto":
            model_params += list(self.readout.parameters())
        model = torch.optim.Adam(model_params, lr=hp.lr, weight_decay=hp.weight_decay)
        adversary = torch.optim.Adam(self.heads.parameters(), lr=hp.adversary_lr or hp.lr)
        if hp.lr_schedule == "constant":
            return [model, adversary]
        epochs = self.trainer.max_epochs
        if not epochs or epochs < 1:
            raise ValueError(
                "lr_schedule: cosine anneals over trainer.max_epochs; set it to a positive number"
            )
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(model, T_max=epochs)
        return [model, adversary], [cosine]

    def on_train_epoch_end(self) -> None:
        """Step the learning-rate schedule, once an epoch (manual optimisation does not)."""
        schedulers = self.lr_schedulers()
        if schedulers is not None:
            schedulers.step()

    def training_step(self, batch, batch_idx):
        """Extra head-only updates, then one backward through the reversal layer."""
        x, y, s = batch
        model_opt, adversary_opt = self.optimizers()
        self.reversal.progress = self.training_progress(batch_idx)
        z = self.encoder(x)

        # extra head-only updates on the (fixed) code: the adversary catches up first
        for _ in range(self.hparams.adversary_steps - 1):
            self.step_without_ddp_hooks(
                adversary_opt, self.heads.losses(z.detach(), s).sum(), self.heads
            )

        if self.hparams.mode == "pred":
            task = F.binary_cross_entropy_with_logits(self.target(z).squeeze(-1), y)
            readout = torch.zeros((), device=x.device)
        else:
            task = F.mse_loss(self.target(z), x)
            readout = F.binary_cross_entropy_with_logits(self.readout(z.detach()).squeeze(-1), y)
        attribute_losses = self.heads.losses(self.reversal(z), s)

        # one backward: heads descend their loss, the encoder (through R_λ) ascends it
        model_opt.zero_grad()
        adversary_opt.zero_grad()
        self.manual_backward(task + readout + attribute_losses.sum())
        model_opt.step()
        adversary_opt.step()

        self.log("train/task_loss", task, prog_bar=True)
        self.log("train/lambda", self.reversal.current_lambda)
        for a, loss in enumerate(attribute_losses):
            self.log(f"train/adversary_loss_{self.attribute_names[a]}", loss)


class FrozenEncoderClassifier(FairModule):
    """GRAD-auto's second stage: a small classifier on the frozen code of a trained encoder.

    Args:
        encoder_ckpt: checkpoint of a :class:`GRADModule` (usually ``mode: auto``) whose
            encoder is loaded and frozen. ``null`` builds a frozen *random* encoder of widths
            ``encoder_hidden`` instead, with a warning: only for smoke tests.
        encoder_hidden: widths of that random encoder.
        hidden: hidden widths of the classifier.
        lr: Adam learning rate.
    """

    def __init__(
        self,
        encoder_ckpt: str | None = None,
        encoder_hidden: list[int] = [64, 64],  # noqa: B006
        hidden: list[int] = [32],  # noqa: B006
        lr: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Load and freeze the first stage's encoder (or a random one), then the classifier."""
        hp = self.hparams
        if hp.encoder_ckpt:
            first = GRADModule.load_from_checkpoint(hp.encoder_ckpt, map_location="cpu")
            if first.hparams.input_dim != input_dim:
                raise ValueError(
                    f"encoder_ckpt {hp.encoder_ckpt} was trained on "
                    f"{first.hparams.input_dim} input columns, this data has {input_dim}: "
                    "use the same DataModule settings as the first stage"
                )
            self.encoder = first.encoder
        else:
            rank_zero_warn(
                "FrozenEncoderClassifier: encoder_ckpt is null, so the classifier reads a frozen "
                "RANDOM encoder (smoke-test mode). Set --model.encoder_ckpt to a GRAD-auto "
                "checkpoint for real results."
            )
            self.encoder = mlp(
                input_dim, hp.encoder_hidden[:-1], hp.encoder_hidden[-1], final_activation=True
            )
        self.encoder.requires_grad_(False)
        code = self.encoder(torch.zeros(1, input_dim)).shape[-1]
        self.classifier = mlp(code, hp.hidden, 1)

    def on_train_epoch_start(self) -> None:
        """Keep the frozen encoder in eval mode: no dropout in the code it hands out."""
        self.encoder.eval()

    def representation(self, x: Tensor) -> Tensor:
        """The frozen encoder's code."""
        return self.encoder(x)

    def predict_proba(self, x: Tensor) -> Tensor:
        """Positive-label probability of the classifier on the frozen code."""
        with torch.no_grad():
            z = self.encoder(x)
        return torch.sigmoid(self.classifier(z).squeeze(-1))

    def configure_optimizers(self):
        """Adam on the classifier only: the encoder stays frozen."""
        return torch.optim.Adam(self.classifier.parameters(), lr=self.hparams.lr)

    def training_step(self, batch, batch_idx):
        """One cross-entropy step of the classifier on the detached code."""
        x, y, _ = batch
        logit = self.classifier(self.encoder(x).detach()).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logit, y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

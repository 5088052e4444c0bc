"""``ImageClassifier``: cross-entropy training of any backbone.

The optimiser and its schedule are the RevNet paper's: SGD with momentum, the learning rate
divided by 10 at fixed milestones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lit_rev.options import check_choice

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

# What the learning-rate milestones count: optimiser steps or epochs.
Interval = Literal["step", "epoch"]

# The optimiser: the RevNet paper's SGD with momentum, or AdamW (transformers train with it).
Optimizer = Literal["sgd", "adamw"]


class ImageClassifier(LightningModule):
    """Classifies uint8 image batches ``(x, y)`` with an injected ``backbone`` that returns logits.

    Pixels go to ``[0, 1]`` (``x / (2**n_bits - 1)``), then per-channel ``(x - mean) / std``.
    The optimiser is SGD with momentum and weight decay (on conv and linear weights only, as
    in the official RevNet code, unless ``decay_all``); the learning rate drops by ``gamma``
    at each of ``milestones``, counted in optimiser steps (``interval="step"``, the paper's
    40k/60k of 80k iterations) or epochs. ``optimizer="adamw"`` swaps SGD for AdamW (same
    weight-decay groups and schedule; ``momentum`` and ``nesterov`` unused), which small vision
    transformers such as :class:`~lit_rev.revnet.transformer.ReversibleViT` need.

    Args:
        backbone: the network, e.g. ``RevNet("revnet38")``.
        num_classes: number of classes (must match the backbone's head).
        milestones: when the learning rate is multiplied by ``gamma``.
        interval: what ``milestones`` count: ``"step"`` (optimiser steps) or ``"epoch"``.
        top_k: accuracies to report; ``[1, 5]`` logs ``acc`` and ``acc_top5``.
        optimizer: ``"sgd"`` (SGD with momentum, the paper's) or ``"adamw"``.
        mean, std: per-channel normalisation (one value each for gray images).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 10,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 2e-4,
        nesterov: bool = False,
        decay_all: bool = False,
        milestones: Sequence[int] = (40_000, 60_000),
        gamma: float = 0.1,
        interval: Interval = "step",
        top_k: Sequence[int] = (1,),
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
        n_bits: int = 8,
        optimizer: Optimizer = "sgd",
    ):
        super().__init__()
        check_choice("interval", interval, Interval)
        check_choice("optimizer", optimizer, Optimizer)
        if len(mean) != len(std):
            raise ValueError("mean and std need one value per channel")
        self.save_hyperparameters(ignore=["backbone"])
        self.backbone = backbone
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.max_pixel = float(2**n_bits - 1)
        self.top_k = tuple(top_k)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{self._name(k)}": MulticlassAccuracy(
                    num_classes, top_k=k, average="micro"
                )
                for stage in ("train", "val", "test")
                for k in self.top_k
            }
        )

    @staticmethod
    def _name(k: int) -> str:
        return "acc" if k == 1 else f"acc_top{k}"

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Integer pixels to ``[0, 1]``, then per-channel ``(x - mean) / std``."""
        return (x.float() / self.max_pixel - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a uint8 (or already float in [0, 2**n_bits)) batch."""
        return self.backbone(self.normalize(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of a uint8 (or float) batch: the backbone's ``features``.

        Feature-based OOD detectors (:mod:`lit_rev.ood.detectors`) read these. Raises
        ``AttributeError`` naming the backbone when it has no ``features`` method.
        """
        features = getattr(self.backbone, "features", None)
        if not callable(features):
            raise AttributeError(
                f"backbone {type(self.backbone).__name__} has no features(x) method; feature-based"
                " OOD detectors need one returning the penultimate features (RevNet and ResNet"
                " have it)"
            )
        return features(self.normalize(x))

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        on_step = stage == "train"
        self.log(
            f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y)
        )
        for k in self.top_k:
            metric = self.metrics[f"{stage}_{self._name(k)}"]
            metric(logits.detach(), y)
            self.log(
                f"{stage}/{self._name(k)}",
                metric,
                on_step=False,
                on_epoch=True,
                prog_bar=k == 1,
                batch_size=len(y),
            )
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """One cross-entropy step on a batch ``(images, labels)``; logs the learning rate too."""
        loss = self._step(batch, "train")
        self.log(
            "lr",
            self.trainer.optimizers[0].param_groups[0]["lr"],
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """Validation loss and accuracies of a batch."""
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Test loss and accuracies of a batch of the first (in-distribution) loader."""
        if dataloader_idx == 0:  # later loaders of an ImageDataModule are out-of-distribution sets
            self._step(batch, "test")

    def predict_step(
        self, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Per image: the predicted class, the label the data carries and every class probability.

        ``prob`` is ``(B, num_classes)``; the CSV writer makes it ``prob_0`` ... columns.
        """
        x, y = batch
        prob = self(x).float().softmax(dim=-1)
        return {"predicted": prob.argmax(dim=-1), "label": y, "prob": prob}

    def configure_optimizers(self):
        """SGD or AdamW (weight decay on the chosen parameters only), multistep schedule."""
        hp = self.hparams
        decayed = [p for p in self.parameters() if hp.decay_all or p.dim() > 1]
        kept = [p for p in self.parameters() if not (hp.decay_all or p.dim() > 1)]
        groups = [
            {"params": decayed, "weight_decay": hp.weight_decay},
            {"params": kept, "weight_decay": 0.0},
        ]
        if hp.get("optimizer", "sgd") == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=hp.lr)
        else:
            optimizer = torch.optim.SGD(
                groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov
            )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.milestones), hp.gamma)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": hp.interval},
        }

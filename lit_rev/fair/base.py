"""``FairModule``, the base class of every fairness model.

It holds what the models share: lazy construction from the DataModule, validation and test
metrics, the leakage probe and the results table.

A subclass builds its networks in :meth:`build` and says how to turn inputs into the
predicted probability of the positive label (:meth:`predict_proba`) and into its
representation (:meth:`representation`, what the leakage probe reads).

The networks need the input width and the protected attributes' group counts. Left unset
(``null`` in YAML), they are read from the DataModule in ``setup`` and stored in the
hyper-parameters, so a checkpoint rebuilds the same networks without the data.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torchmetrics.classification import BinaryAccuracy

from lit_rev.fair.metrics import (
    Consistency,
    Delta,
    DemographicParityDifference,
    Discrimination,
    EqualizedOddsDifference,
    PositiveRate,
)
from lit_rev.fair.probe import Probe, leakage_probe
from lit_rev.options import check_choice
from lit_rev.report import format_table, log_dir_of, write_report


class FairModule(LightningModule):
    """Base class of the fairness models; its arguments are shared by all of them.

    Args:
        input_dim: width of ``x``; ``None`` reads it from the DataModule.
        protected_classes: group count of each protected attribute; ``None`` reads the
            DataModule.
        protected_names: their names (for logs); ``None`` reads the DataModule.
        consistency_k: neighbours of the consistency metric.
        probes: leakage probes run at test time (``logistic``, ``mlp``); empty for none.
        probe_max_train: cap on the training rows the probe is fitted on.
    """

    def __init__(
        self,
        input_dim: int | None = None,
        protected_classes: list[int] | None = None,
        protected_names: list[str] | None = None,
        consistency_k: int = 10,
        probes: list[Probe] | None = None,
        probe_max_train: int | None = 20000,
    ):
        super().__init__()
        for kind in probes or []:
            check_choice("probes", kind, Probe)
        self.consistency_k = consistency_k
        self.probes = list(probes or [])
        self.probe_max_train = probe_max_train
        self.built = False
        self.consistency_columns: list[int] | None = None
        self.test_results: dict[str, float] = {}

    def build_if_known(self) -> None:
        """Build the networks now if the shapes are known, as when loading a checkpoint.

        Subclasses call this at the end of ``__init__``, after ``save_hyperparameters()``.
        """
        if (
            self.hparams.get("input_dim") is not None
            and self.hparams.get("protected_classes") is not None
        ):
            self._build_all(
                self.hparams.input_dim,
                list(self.hparams.protected_classes),
                self.hparams.get("protected_names"),
            )

    # --- to implement -----------------------------------------------------------------------
    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Create the networks for ``input_dim`` columns and these protected group counts."""
        raise NotImplementedError

    def predict_proba(self, x: Tensor) -> Tensor:
        """``(B,)`` probability of the positive label."""
        raise NotImplementedError

    def representation(self, x: Tensor) -> Tensor:
        """``(B, d)`` the representation the leakage probe reads."""
        raise NotImplementedError

    # --- construction -----------------------------------------------------------------------
    def _build_all(self, input_dim: int, classes: list[int], names: list[str] | None) -> None:
        names = list(names) if names else [f"s{a}" for a in range(len(classes))]
        self.attribute_names = names
        self.build(input_dim, classes)
        self.val_accuracy = BinaryAccuracy()
        self.val_discrimination = nn.ModuleList(Discrimination(k) for k in classes)
        self.test_metrics = nn.ModuleDict(
            {
                "accuracy": BinaryAccuracy(),
                "positive_rate": PositiveRate(),
                "consistency": Consistency(self.consistency_k),
                "consistency_hard": Consistency(self.consistency_k, hard=True),
            }
        )
        self.group_metrics = nn.ModuleList(
            nn.ModuleDict(
                {
                    "discrimination": Discrimination(k),
                    "delta": Delta(k),
                    "dp_diff": DemographicParityDifference(k),
                    "eo_diff": EqualizedOddsDifference(k),
                }
            )
            for k in classes
        )
        self.built = True

    def setup(self, stage: str) -> None:
        """Read the shapes (and consistency columns) from the DataModule; build if not built."""
        self.use_datamodule(getattr(self.trainer, "datamodule", None))

    def use_datamodule(self, datamodule) -> None:
        """Take from ``datamodule`` what an attached one gives, for use with or without a Trainer.

        Reads its consistency columns and, unless the networks are built already, its input
        width and protected groups, then builds them: a module made by
        :func:`lit_rev.config.instantiate` from a config without ``input_dim`` can so load a
        checkpoint of that config.
        """
        if datamodule is not None:
            input_dim = getattr(datamodule, "input_dim", None)  # a tabular one encodes here
            self.consistency_columns = getattr(datamodule, "consistency_columns", None)
        if self.built:
            return
        if datamodule is None or not hasattr(datamodule, "protected_classes"):
            raise ValueError(
                f"{type(self).__name__} needs input_dim and protected_classes, "
                "or a tabular DataModule to read them from"
            )
        self.hparams.input_dim = input_dim
        self.hparams.protected_classes = list(datamodule.protected_classes)
        self.hparams.protected_names = list(datamodule.protected)
        self._build_all(
            self.hparams.input_dim, self.hparams.protected_classes, self.hparams.protected_names
        )

    def training_progress(self, batch_idx: int) -> float:
        """Fraction of training done, in [0, 1] (for schedules such as the DANN ramp)."""
        total = self.trainer.estimated_stepping_batches
        if not total or not math.isfinite(total):
            return 1.0
        step = self.current_epoch * self.trainer.num_training_batches + batch_idx
        return min(1.0, step / total)

    def step_without_ddp_hooks(self, optimizer, loss: Tensor, module: nn.Module) -> None:
        """One ``optimizer`` step on ``module``'s parameters from ``loss``, outside DDP's hooks.

        Used for the *extra* adversary updates on a detached code. Gradients come from
        ``autograd.grad`` and are averaged over processes by hand: a second ``backward`` within
        one DDP forward would trip DDP's hooks.
        """
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params)
        optimizer.zero_grad()
        for p, g in zip(params, grads, strict=True):
            p.grad = (
                self.trainer.strategy.reduce(g, reduce_op="mean")
                if self.trainer.world_size > 1
                else g
            )
        optimizer.step()
        optimizer.zero_grad()

    # --- validation -------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        """Accumulate validation accuracy and each attribute's discrimination on a batch."""
        x, y, s = batch
        p = self.predict_proba(x)
        self.val_accuracy(p, y.long())
        self.log("val/accuracy", self.val_accuracy, prog_bar=True)
        for a, metric in enumerate(self.val_discrimination):
            metric(p, s[:, a])
            self.log(f"val/discrimination_{self.attribute_names[a]}", metric, prog_bar=a == 0)

    # --- test: metrics, leakage probe, results table ----------------------------------------
    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Accumulate every test metric (overall and per protected attribute) on a batch."""
        x, y, s = batch
        p = self.predict_proba(x)
        fair_x = x if self.consistency_columns is None else x[:, self.consistency_columns]
        self.test_metrics["accuracy"].update(p, y.long())
        self.test_metrics["positive_rate"].update(p)
        self.test_metrics["consistency"].update(fair_x, p)
        self.test_metrics["consistency_hard"].update(fair_x, p)
        for a, metrics in enumerate(self.group_metrics):
            metrics["discrimination"].update(p, s[:, a])
            metrics["delta"].update(p, y, s[:, a])
            metrics["dp_diff"].update(p, s[:, a])
            metrics["eo_diff"].update(p, y, s[:, a])

    # --- predict: one row per person --------------------------------------------------------
    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """One row per person, enough to recompute the fairness metrics from the predictions.

        Per row: the predicted label (probability > 0.5, the threshold of the accuracy metric),
        the true label, both class probabilities (``prob`` is ``(B, 2)``: negative, positive)
        and each protected attribute's group.
        """
        x, y, s = batch
        p = self.predict_proba(x).float()
        out = {
            "predicted": (p > 0.5).long(),
            "label": y.long(),
            "prob": torch.stack([1 - p, p], dim=-1),
        }
        for a, name in enumerate(self.attribute_names):
            out[f"protected_{name}"] = s[:, a].long()
        return out

    def on_test_epoch_end(self) -> None:
        """Compute the test metrics and the probe; log them and write the results table."""
        results: dict[str, float] = {}
        for name, metric in self.test_metrics.items():
            results[name] = float(metric.compute())
            metric.reset()
        for a, metrics in enumerate(self.group_metrics):
            for name, metric in metrics.items():
                results[f"{name}_{self.attribute_names[a]}"] = float(metric.compute())
                metric.reset()
        results.update(self.probe_results())
        self.test_results = results
        self.log_dict({f"test/{k}": v for k, v in results.items() if not math.isnan(v)})
        self._write_table(results)

    @torch.no_grad()
    def embed(self, dataset) -> tuple[Tensor, Tensor]:
        """Representation and protected codes of a whole tabular dataset, in eval mode."""
        was_training = self.training
        self.eval()
        z, s = [], []
        for start in range(0, len(dataset), 4096):
            xb, _, sb = dataset.__getitems__(list(range(start, min(start + 4096, len(dataset)))))
            z.append(self.representation(xb.to(self.device)).float().cpu())
            s.append(sb)
        self.train(was_training)
        return torch.cat(z), torch.cat(s)

    def probe_results(self) -> dict[str, float]:
        """Fit each leakage probe on the training split's representation, score it on test.

        Returns ``probe_<kind>_acc_<attribute>``, ``probe_<kind>_auroc_<attribute>`` and
        ``majority_<attribute>``; empty without probes or without a tabular DataModule.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        probes = self.probes
        if not probes or datamodule is None or getattr(datamodule, "train_set", None) is None:
            return {}
        train_z, train_s = self.embed(datamodule.train_set)
        # fast_dev_run is a smoke test: fit the probe on a small sample only
        max_train = 1000 if self.trainer.fast_dev_run else self.probe_max_train
        test_z, test_s = self.embed(datamodule.test_set)
        out = {}
        for a, name in enumerate(self.attribute_names):
            for kind in probes:
                found = leakage_probe(
                    train_z.numpy(),
                    train_s[:, a].numpy(),
                    test_z.numpy(),
                    test_s[:, a].numpy(),
                    kind=kind,
                    max_train=max_train,
                )
                out[f"probe_{kind}_acc_{name}"] = found["accuracy"]
                out[f"probe_{kind}_auroc_{name}"] = found["auroc"]
            out[f"majority_{name}"] = found["majority"]
        return out

    @rank_zero_only
    def _write_table(self, results: dict[str, float]) -> None:
        if self.trainer.fast_dev_run:  # a smoke test has no log dir; leave no files behind
            return
        row = {
            "model": type(self).__name__,
            "data": type(getattr(self.trainer, "datamodule", None)).__name__,
            **results,
        }
        directory = log_dir_of(self.trainer)
        write_report([row], directory, "fair_results")
        print(format_table([{"metric": k, "value": v} for k, v in results.items()], digits=4))

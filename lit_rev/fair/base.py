"""``FairModule``, the base class of every fairness model.

It holds what the models share: lazy construction from the DataModule, validation and test
metrics, the leakage probe and the results table.

A subclass builds its networks in :meth:`build` and says how to turn inputs into the
predicted probability of the positive label (:meth:`predict_proba`) and into its
representation (:meth:`representation`, what the leakage probe reads). The labels it outputs
are ``[p >= 0.5]`` unless it says otherwise (:meth:`predict_labels`: a randomised
classifier's drawn labels).

Every model is scored on both readings of its output, under their own names: the *soft*
metrics read the probability ``p`` (``discrimination_soft_<attribute>``, Zemel et al.'s
expected gap; ``consistency_soft``; ``delta_soft_<attribute>``), the *hard* ones its labels
(``discrimination_hard_<attribute>``, ``consistency_hard``, ``delta_hard_<attribute>``, and
``accuracy``, ``positive_rate``, ``dp_diff``, ``eo_diff``, ... which were always hard). The
unsuffixed ``discrimination_<attribute>``, ``consistency`` and ``delta_<attribute>`` are the
soft ones, under their earlier names.

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

from lit_rev.fair.bootstrap import SIGNED, bootstrap_replicates, row_interval
from lit_rev.fair.metrics import (
    Delta,
    DemographicParityDifference,
    Discrimination,
    DisparateImpactRatio,
    EqualizedOddsDifference,
    EqualizedOddsRatio,
    EqualOpportunityDifference,
    GroupRates,
    PositiveRate,
    PredictionRows,
    neighbour_agreement,
)
from lit_rev.fair.probe import Probe, leakage_probe
from lit_rev.fair.results import collapse_status, is_collapsed, metric_rows
from lit_rev.inference import evaluating
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
        bootstrap_resamples: resamples of the test set for the 95% intervals (0: none).
        bootstrap_seed: seed of those resamples.
    """

    def __init__(
        self,
        input_dim: int | None = None,
        protected_classes: list[int] | None = None,
        protected_names: list[str] | None = None,
        consistency_k: int = 10,
        probes: list[Probe] | None = None,
        probe_max_train: int | None = 20000,
        bootstrap_resamples: int = 1000,
        bootstrap_seed: int = 0,
    ):
        super().__init__()
        for kind in probes or []:
            check_choice("probes", kind, Probe)
        self.consistency_k = consistency_k
        self.probes = list(probes or [])
        self.probe_max_train = probe_max_train
        if bootstrap_resamples < 0:
            raise ValueError(
                f"bootstrap_resamples must be >= 0 (0 turns the intervals off), "
                f"got {bootstrap_resamples}"
            )
        self.bootstrap_resamples = bootstrap_resamples
        self.bootstrap_seed = bootstrap_seed
        self.built = False
        self.group_names: list[list[str]] | None = None
        self.consistency_columns: list[int] | None = None
        self.test_results: dict[str, float] = {}
        self.test_groups: list[dict] = []
        self.test_bootstrap: dict[str, Tensor] = {}

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

    #: whether predictions read the protected attribute ``s`` (besides ``x``) at prediction
    #: time; results tables and trade-off plots mark such methods
    reads_protected_at_prediction: bool = False

    def predict_labels(self, x: Tensor, proba: Tensor) -> Tensor:
        """``(B,)`` the 0/1 labels the model outputs for ``x``, whose probability is ``proba``.

        ``[proba >= 0.5]``, the threshold of every hard metric. A randomised classifier
        overrides it with its drawn labels.
        """
        return (proba >= 0.5).float()

    # --- construction -----------------------------------------------------------------------
    def _build_all(self, input_dim: int, classes: list[int], names: list[str] | None) -> None:
        names = list(names) if names else [f"s{a}" for a in range(len(classes))]
        self.attribute_names = names
        self.build(input_dim, classes)
        self.num_groups = list(classes)
        self.val_accuracy = BinaryAccuracy()
        self.val_positive_rate = PositiveRate()
        self.val_discrimination = nn.ModuleList(Discrimination(k) for k in classes)
        self.val_discrimination_hard = nn.ModuleList(Discrimination(k) for k in classes)
        self.test_metrics = nn.ModuleDict(
            {"accuracy": BinaryAccuracy(), "positive_rate": PositiveRate()}
        )
        # every test row: consistency's neighbour search and the bootstrap need them all
        self.test_rows = PredictionRows()
        self.group_metrics = nn.ModuleList(
            nn.ModuleDict(
                {
                    "discrimination": Discrimination(k),
                    "delta": Delta(k),
                    "dp_diff": DemographicParityDifference(k),
                    "eo_diff": EqualizedOddsDifference(k),
                    "eop_diff": EqualOpportunityDifference(k),
                    "di_ratio": DisparateImpactRatio(k),
                    "eo_ratio": EqualizedOddsRatio(k),
                }
            )
            for k in classes
        )
        self.group_rates = nn.ModuleList(GroupRates(k) for k in classes)
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
            groups = getattr(datamodule, "protected_groups", None)
            if groups is not None:
                self.group_names = [list(g) for g in groups]
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
        """Accumulate validation accuracy and each attribute's discrimination on a batch.

        ``val/accuracy`` and ``val/positive_rate`` are those of the output labels;
        ``val/discrimination_<attribute>`` is the soft gap (of ``p``),
        ``val/discrimination_hard_<attribute>`` the gap of the labels.
        """
        x, y, s = batch
        p = self.predict_proba(x)
        labels = self.predict_labels(x, p)
        self.val_accuracy(labels, y.long())
        self.log("val/accuracy", self.val_accuracy, prog_bar=True)
        self.val_positive_rate(labels)
        self.log("val/positive_rate", self.val_positive_rate)
        for a, metric in enumerate(self.val_discrimination):
            metric(p, s[:, a])
            self.log(f"val/discrimination_{self.attribute_names[a]}", metric, prog_bar=a == 0)
            hard = self.val_discrimination_hard[a]
            hard(labels, s[:, a])
            self.log(f"val/discrimination_hard_{self.attribute_names[a]}", hard)

    # --- test: metrics, leakage probe, results table ----------------------------------------
    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Accumulate every test metric (overall and per protected attribute) on a batch."""
        x, y, s = batch
        p = self.predict_proba(x)
        labels = self.predict_labels(x, p)
        fair_x = x if self.consistency_columns is None else x[:, self.consistency_columns]
        self.test_metrics["accuracy"].update(labels, y.long())
        self.test_metrics["positive_rate"].update(labels)
        self.test_rows.update(fair_x, p, y, s, labels)
        for a, metrics in enumerate(self.group_metrics):
            # the soft gap reads p; every other metric the labels the model outputs
            metrics["discrimination"].update(p, s[:, a])
            metrics["delta"].update(p, y, s[:, a], labels)
            metrics["dp_diff"].update(labels, s[:, a])
            metrics["eo_diff"].update(labels, y, s[:, a])
            metrics["eop_diff"].update(labels, y, s[:, a])
            metrics["di_ratio"].update(labels, s[:, a])
            metrics["eo_ratio"].update(labels, y, s[:, a])
            self.group_rates[a].update(labels, y, s[:, a])

    # --- predict: one row per person --------------------------------------------------------
    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """One row per person, enough to recompute the fairness metrics from the predictions.

        Per row: the predicted label (:meth:`predict_labels`, what the accuracy metric
        scores), the true label, both class probabilities (``prob`` is ``(B, 2)``: negative,
        positive) and each protected attribute's group.
        """
        x, y, s = batch
        p = self.predict_proba(x).float()
        out = {
            "predicted": self.predict_labels(x, p).long(),
            "label": y.long(),
            "prob": torch.stack([1 - p, p], dim=-1),
        }
        for a, name in enumerate(self.attribute_names):
            out[f"protected_{name}"] = s[:, a].long()
        return out

    def on_test_epoch_end(self) -> None:
        """Compute the test metrics, per-group tables, intervals and probe; log and write them.

        ``test_results`` gets every metric, ``collapsed`` (1.0 when the positive rate is 0 or 1:
        a constant predictor, whose fairness numbers mean nothing) and, with
        ``bootstrap_resamples > 0``, ``<metric>_ci_low``/``_ci_high``: the 95% interval over
        resamples of the test rows (the training seed's variance is not in it; a gap's
        interval is :func:`~lit_rev.fair.bootstrap.folded_interval`, the percentile one
        otherwise); ``test_groups`` the per-group rows; ``test_bootstrap`` the replicates
        themselves (for intervals of a mean over seeds). See the module for the soft and
        hard metrics.
        """
        results: dict[str, float] = {}
        for name, metric in self.test_metrics.items():
            results[name] = float(metric.compute())
            metric.reset()
        rows = self.test_rows.compute()
        self.test_rows.reset()
        # consistency on p and on the labels: one neighbour search for both columns
        both = torch.stack([rows["preds"], rows["labels"]], dim=1)
        agreement = neighbour_agreement(rows["features"], both, self.consistency_k)
        results["consistency"] = float(agreement[:, 0].mean())
        results["consistency_soft"] = results["consistency"]
        results["consistency_hard"] = float(agreement[:, 1].mean())
        for a, metrics in enumerate(self.group_metrics):
            attribute = self.attribute_names[a]
            for name, metric in metrics.items():
                results[f"{name}_{attribute}"] = float(metric.compute())
                metric.reset()
            # the gap of the labels is the demographic-parity difference, by definition
            results[f"discrimination_soft_{attribute}"] = results[f"discrimination_{attribute}"]
            results[f"discrimination_hard_{attribute}"] = results[f"dp_diff_{attribute}"]
            results[f"delta_soft_{attribute}"] = results[f"delta_{attribute}"]
            results[f"delta_hard_{attribute}"] = float(
                torch.tensor(results["accuracy"]) - torch.tensor(results[f"dp_diff_{attribute}"])
            )
        results["collapsed"] = float(is_collapsed(results))
        self.test_groups = self.group_table()
        self.test_bootstrap = {}
        if self.bootstrap_resamples:
            self.test_bootstrap = bootstrap_replicates(
                rows["preds"],
                rows["target"],
                rows["protected"],
                self.attribute_names,
                self.num_groups,
                agreement=agreement,
                resamples=self.bootstrap_resamples,
                seed=self.bootstrap_seed,
                labels=rows["labels"],
            )
            for key in self.test_bootstrap:
                if not key.endswith(SIGNED):
                    low, high = row_interval(self.test_bootstrap, key)
                    results[f"{key}_ci_low"], results[f"{key}_ci_high"] = low, high
        results.update(self.probe_results())
        self.test_results = results
        self.log_dict({f"test/{k}": v for k, v in results.items() if not math.isnan(v)})
        self.log_dict(
            {
                f"test_groups/{row['attribute']}/{row['group']}/{column}": float(row[column])
                for row in self.test_groups
                for column in GroupRates.COLUMNS
                if not math.isnan(row[column])
            }
        )
        self._write_table(results)

    def group_table(self) -> list[dict]:
        """The per-group rows of every protected attribute (and reset their metrics).

        One row per (attribute, group), in the style of fairlearn's ``MetricFrame.by_group``:
        ``n``, ``base_rate``, ``positive_rate``, ``accuracy``, ``tpr``, ``fpr``. Groups are named
        by the DataModule (``Female``, ``Male``) when it gives names, else by their codes.
        """
        table = []
        for a, metric in enumerate(self.group_rates):
            values = metric.compute()
            metric.reset()
            names = (self.group_names or [None] * len(self.group_rates))[a]
            for g, row in enumerate(values.tolist()):
                group = names[g] if names and g < len(names) else str(g)
                entry = {"attribute": self.attribute_names[a], "group": group}
                entry.update(zip(GroupRates.COLUMNS, row, strict=True))
                entry["n"] = int(entry["n"])
                table.append(entry)
        return table

    @torch.no_grad()
    def embed(self, dataset) -> tuple[Tensor, Tensor]:
        """Representation and protected codes of a whole tabular dataset, in eval mode."""
        z, s = [], []
        with evaluating(self):
            for start in range(0, len(dataset), 4096):
                rows = list(range(start, min(start + 4096, len(dataset))))
                xb, _, sb = dataset.__getitems__(rows)
                z.append(self.representation_given(xb.to(self.device), sb).float().cpu())
                s.append(sb)
        return torch.cat(z), torch.cat(s)

    def representation_given(self, x: Tensor, s: Tensor) -> Tensor:
        """The representation of ``x``; a model that reads ``s`` to predict also gets it."""
        return self.representation(x)

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
        status = collapse_status(results)
        row = {
            "model": type(self).__name__,
            "data": type(getattr(self.trainer, "datamodule", None)).__name__,
            "status": status,
            **results,
        }
        directory = log_dir_of(self.trainer)
        write_report([row], directory, "fair_results")
        write_report(self.test_groups, directory, "fair_groups")
        experiment = getattr(self.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_text"):
            experiment.add_text(
                "test/groups", format_table(self.test_groups, digits=4, markdown=True)
            )
        print(f"status: {status}")
        print(format_table(metric_rows(results), digits=4))
        print(format_table(self.test_groups, digits=4))

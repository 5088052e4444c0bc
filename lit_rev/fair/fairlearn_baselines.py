"""fairlearn's baselines under lit_rev's CLI, data and metrics.

- :class:`ExponentiatedGradientModule`: fairlearn's ``ExponentiatedGradient`` (Agarwal et al.
  2018, a reductions method) with ``DemographicParity`` (or ``EqualizedOdds``);
- :class:`ThresholdOptimizerModule`: fairlearn's ``ThresholdOptimizer`` (Hardt et al. 2016,
  post-processing: one threshold per group on the estimator's scores).

Each wraps one of two base estimators: scikit-learn's ``LogisticRegression`` (``estimator:
logistic``) or :class:`TorchMLPClassifier` (``estimator: mlp``), an sklearn classifier around
the very network of the Vanilla configs (GRADModule's encoder and classifier, trained by
Adam on the weighted cross-entropy, so that ``ExponentiatedGradient`` can reweight rows).

They are :class:`~lit_rev.fair.base.FairModule` subclasses, so ``python -m lit_rev fit|test`` and
``python -m lit_rev.commands.fair_results`` run them on the same splits and features as every
other model and score them with the same metrics. ``fit`` fits the fairlearn model once, on
the DataModule's whole training split, when fitting starts (Lightning's epochs then do
nothing); the fitted model is saved in, and read back from, the Lightning checkpoint.

Both fairlearn methods give *randomised* classifiers. The probability handed to the soft
metrics is the classifier's probability of a positive (fairlearn's ``_pmf_predict``), as every
other model's ``p``; the labels handed to the hard ones (and to accuracy) are one seeded draw
of that classifier per row, as fairlearn's ``predict(X, random_state=...)`` draws it: the
classifier fairlearn guarantees, not a rounded average.

fairlearn is an optional dependency (``pip install "lit_rev[fair]"``), imported only when
a model is fitted.
"""

from __future__ import annotations

import copy
import importlib
import zipfile
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn import functional as F

from lit_rev.fair.group_aware import GroupAwareModule
from lit_rev.fair.networks import mlp
from lit_rev.options import check_choice

#: The base estimator of a fairlearn model.
Estimator = Literal["logistic", "mlp"]
#: ExponentiatedGradient's constraint (a fairlearn ``Moment``).
ReductionConstraint = Literal["demographic_parity", "equalized_odds"]
#: ThresholdOptimizer's constraint (its ``constraints`` argument).
ThresholdConstraint = Literal["demographic_parity", "equalized_odds"]
#: ThresholdOptimizer's objective (its ``objective`` argument).
ThresholdObjective = Literal["accuracy_score", "balanced_accuracy_score"]
#: The MLP's learning-rate schedule over its epochs, as GRADModule's ``lr_schedule``.
MLPSchedule = Literal["constant", "cosine"]

#: Rows a smoke run (``fast_dev_run``) fits on.
SMOKE_ROWS = 1000


def import_fairlearn(submodule: str) -> Any:
    """``fairlearn.<submodule>``, or an ImportError saying how to install fairlearn."""
    try:
        return importlib.import_module(f"fairlearn.{submodule}")
    except ImportError as err:
        raise ImportError(
            f"the fairlearn baselines need fairlearn (fairlearn.{submodule} failed to import: "
            f'{err}); install it with: pip install "lit_rev[fair]"'
        ) from err


class TorchMLPClassifier:
    """A scikit-learn classifier around the Vanilla configs' MLP; ``fit`` honours sample weights.

    The network is GRADModule's in ``mode: pred``: ``mlp(D, hidden[:-1], hidden[-1], dropout,
    final_activation=True)`` then ``Linear(hidden[-1], 1)``. It is trained by Adam on the
    cross-entropy weighted by ``sample_weight`` (normalised to mean 1, so the weights'
    scale does not change the step size), ``epochs`` passes over shuffled mini-batches, with
    the learning rate constant or annealed to 0 by a cosine (stepped once an epoch).

    Training is seeded by ``random_state`` (initialisation, shuffling, dropout) and leaves
    torch's global random state as it found it.

    Args:
        hidden: encoder widths; the last one is the code size.
        dropout: dropout in the encoder.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        epochs: passes over the training rows.
        batch_size: rows per step.
        lr_schedule: ``constant`` or ``cosine``.
        random_state: seed of the fit.
    """

    _estimator_type = "classifier"

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 64),
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 20,
        batch_size: int = 256,
        lr_schedule: MLPSchedule = "cosine",
        random_state: int = 0,
    ):
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.random_state = random_state

    # --- the scikit-learn estimator protocol (what sklearn.base.clone needs) ------------------
    _PARAMS = (
        "hidden",
        "dropout",
        "lr",
        "weight_decay",
        "epochs",
        "batch_size",
        "lr_schedule",
        "random_state",
    )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> TorchMLPClassifier:
        """Set constructor arguments; returns ``self``."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"TorchMLPClassifier has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """A binary classifier's tags (scikit-learn >= 1.6 asks estimators for them)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(multi_class=False),
        )

    # --- fitting and predicting -----------------------------------------------------------
    def network(self, input_dim: int) -> nn.Sequential:
        """A fresh, randomly initialised copy of the network for ``input_dim`` columns."""
        hidden = list(self.hidden)
        encoder = mlp(input_dim, hidden[:-1], hidden[-1], self.dropout, final_activation=True)
        return nn.Sequential(encoder, nn.Linear(hidden[-1], 1))

    def fit(self, X, y, sample_weight=None) -> TorchMLPClassifier:
        """Train on ``X`` ``(N, D)``, binary ``y`` ``(N,)``, optional ``sample_weight`` ``(N,)``."""
        check_choice("lr_schedule", self.lr_schedule, MLPSchedule)
        x = torch.as_tensor(np.asarray(X, dtype=np.float32))
        labels = np.asarray(y).reshape(-1)
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(
                f"TorchMLPClassifier: y must hold 0/1 labels, got {np.unique(labels)[:5]}"
            )
        target = torch.as_tensor(labels.astype(np.float32))
        weight = (
            torch.ones(len(x))
            if sample_weight is None
            else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32).reshape(-1))
        )
        weight = weight / weight.mean().clamp_min(1e-12)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = x.shape[1]
        # gradients even where the caller turned them off (Lightning's test loop)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(self.random_state)
            self.network_ = self.network(x.shape[1])
            optimizer = torch.optim.Adam(
                self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            schedule = (
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
                if self.lr_schedule == "cosine"
                else None
            )
            self.network_.train()
            for _ in range(self.epochs):
                order = torch.randperm(len(x))
                for start in range(0, len(x), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    logit = self.network_(x[rows]).squeeze(-1)
                    loss = F.binary_cross_entropy_with_logits(
                        logit, target[rows], weight=weight[rows], reduction="sum"
                    ) / weight[rows].sum().clamp_min(1e-12)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                if schedule is not None:
                    schedule.step()
        self.network_.eval()
        return self

    # --- serialisation: parameters as numpy arrays, so skops stores it without pickle ----------
    def __getstate__(self) -> dict[str, Any]:
        """The settings and fitted attributes, the network as its ``state_dict`` in numpy."""
        state = {name: value for name, value in self.__dict__.items() if name != "network_"}
        if "network_" in self.__dict__:
            state["network_"] = {
                name: tensor.detach().cpu().numpy().copy()
                for name, tensor in self.network_.state_dict().items()
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the network from the settings and load its stored parameters."""
        state = dict(state)
        weights = state.pop("network_", None)
        self.__dict__.update(state)
        if weights is not None:
            # the fresh network's random initialisation must not move the global generator
            with torch.random.fork_rng(devices=[]):
                self.network_ = self.network(int(self.n_features_in_))
            self.network_.load_state_dict(
                {name: torch.from_numpy(np.array(value)) for name, value in weights.items()}
            )
            self.network_.eval()

    @torch.no_grad()
    def predict_proba(self, X) -> np.ndarray:
        """``(N, 2)`` probabilities of labels 0 and 1."""
        self.network_.eval()
        p = torch.sigmoid(self.network_(torch.as_tensor(np.asarray(X, dtype=np.float32))))
        p = p.squeeze(-1).double().numpy()
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        """Labels 0/1 (probability of 1 at least 0.5)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def score(self, X, y, sample_weight=None) -> float:
        """(Weighted) accuracy."""
        correct = (self.predict(X) == np.asarray(y).reshape(-1)).astype(float)
        return float(np.average(correct, weights=sample_weight))


class FairlearnModule(GroupAwareModule):
    """Base of the fairlearn baselines: fit once when Lightning's fit starts, then predict.

    A subclass says how to build the fairlearn model (:meth:`make_model`), fit it
    (:meth:`fit_model`), give its probability of a positive (:meth:`positive_probability`)
    and draw its predictions (:meth:`draw`).

    Args:
        estimator: the base estimator, ``logistic`` (scikit-learn's ``LogisticRegression``)
            or ``mlp`` (:class:`TorchMLPClassifier`, the Vanilla configs' network).
        logistic_c: the logistic regression's inverse L2 strength ``C``.
        logistic_max_iter: its L-BFGS iterations.
        hidden, dropout, lr, weight_decay, epochs, batch_size, lr_schedule: the MLP's (as in
            the Vanilla configs; see :class:`TorchMLPClassifier`).
        **kwargs: :class:`~lit_rev.fair.base.FairModule`'s. ``probes`` must stay empty: these
            models have no learned representation for a leakage probe to read.
    """

    def __init__(
        self,
        estimator: Estimator = "logistic",
        logistic_c: float = 1.0,
        logistic_max_iter: int = 1000,
        hidden: list[int] = [64, 64],  # noqa: B006 (never mutated; a list reads best in YAML)
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        epochs: int = 20,
        batch_size: int = 256,
        lr_schedule: MLPSchedule = "cosine",
        **kwargs,
    ):
        check_choice("estimator", estimator, Estimator)
        check_choice("lr_schedule", lr_schedule, MLPSchedule)
        if kwargs.get("probes"):
            raise ValueError(
                f"probes={kwargs['probes']}: {type(self).__name__} has no learned "
                "representation for a leakage probe to read; set probes: []"
            )
        super().__init__(**kwargs)
        # a subclass's save_hyperparameters() sees only the arguments passed through it
        self.estimator_settings = {
            "estimator": estimator,
            "logistic_c": logistic_c,
            "logistic_max_iter": logistic_max_iter,
            "hidden": list(hidden),
            "dropout": dropout,
            "lr": lr,
            "weight_decay": weight_decay,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr_schedule": lr_schedule,
        }
        self.automatic_optimization = False
        self.model: Any = None
        self.draw_seed = 0
        self.draws = np.random.RandomState(0)

    # --- to implement -----------------------------------------------------------------------
    def make_model(self, estimator: Any) -> Any:
        """The unfitted fairlearn model around ``estimator``."""
        raise NotImplementedError

    def fit_model(self, model: Any, x: np.ndarray, y: np.ndarray, s: np.ndarray) -> None:
        """Fit ``model`` on inputs ``x``, labels ``y`` and group codes ``s`` ``(N, A)``."""
        raise NotImplementedError

    def draw(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """One draw of the fitted randomised classifier per row: 0/1 labels ``(N,)``."""
        raise NotImplementedError

    def positive_probability(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The randomised classifier's probability of drawing 1, per row ``(N,)``."""
        raise NotImplementedError

    # --- FairModule ---------------------------------------------------------------------------
    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Nothing to build: the model is fitted, not trained by Lightning."""

    def representation(self, x: Tensor) -> Tensor:
        """There is none: these models have no learned representation."""
        raise NotImplementedError(
            f"{type(self).__name__} has no learned representation (leave probes empty)"
        )

    def predict_proba(self, x: Tensor) -> Tensor:
        """The randomised classifier's probability of a positive per row (no draw)."""
        self._check_fitted()
        p = self.positive_probability(x.detach().cpu().double().numpy(), self.groups.cpu().numpy())
        return torch.as_tensor(np.asarray(p, dtype=np.float64), device=x.device).float()

    def predict_labels(self, x: Tensor, proba: Tensor) -> Tensor:
        """One seeded draw (0 or 1) of the randomised classifier per row."""
        self._check_fitted()
        labels = self.draw(x.detach().cpu().double().numpy(), self.groups.cpu().numpy())
        return torch.as_tensor(labels, dtype=torch.float32, device=x.device)

    def _check_fitted(self) -> None:
        if self.model is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: run fit, or test with a checkpoint of a fit"
            )

    def base_estimator(self, random_state: int, smoke: bool = False) -> Any:
        """A fresh base estimator (``smoke``: the MLP trains one epoch)."""
        settings = self.estimator_settings
        if settings["estimator"] == "logistic":
            from sklearn.linear_model import LogisticRegression

            return LogisticRegression(
                C=settings["logistic_c"], max_iter=settings["logistic_max_iter"]
            )
        return TorchMLPClassifier(
            hidden=tuple(settings["hidden"]),
            dropout=settings["dropout"],
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            epochs=1 if smoke else settings["epochs"],
            batch_size=settings["batch_size"],
            lr_schedule=settings["lr_schedule"],
            random_state=random_state,
        )

    def sensitive_features(self, s: np.ndarray) -> np.ndarray:
        """The sensitive features fairlearn is given: the attribute's codes, or all columns.

        With several attributes fairlearn forms their intersectional groups.
        """
        return s[:, 0] if s.shape[1] == 1 else s

    def fit_on(self, x: Tensor, y: Tensor, s: Tensor, smoke: bool = False) -> None:
        """Fit the fairlearn model on these rows; seeds come from torch's global generator.

        So ``seed_everything`` (``fair_results``' seed ``i``) seeds the fit, and the draws
        of the randomised classifier.
        """
        random_state, self.draw_seed = (int(v) for v in torch.randint(0, 2**31 - 1, (2,)))
        model = self.make_model(self.base_estimator(random_state, smoke))
        self.fit_model(
            model,
            x.detach().cpu().double().numpy(),
            y.detach().cpu().numpy().astype(np.int64),
            s.detach().cpu().numpy(),
        )
        self.model = model
        self.draws = np.random.RandomState(self.draw_seed)

    def on_fit_start(self) -> None:
        """Fit on the DataModule's whole training split (a smoke run: on 1,000 of its rows)."""
        self.fit_if_unfitted()

    def on_test_start(self) -> None:
        """Testing an unfitted model (no checkpoint given) fits it first, with a warning."""
        if self.model is None:
            rank_zero_warn(
                f"{type(self).__name__} is tested without a fitted model (no --ckpt_path?): "
                "fitting it now on the DataModule's training split"
            )
        self.fit_if_unfitted()

    on_predict_start = on_test_start

    def fit_if_unfitted(self) -> None:
        """Fit on the DataModule's training split unless fitted (or loaded) already."""
        if self.model is not None:  # fitted, or loaded from a checkpoint
            return
        if self.trainer.world_size > 1:
            raise ValueError(
                f"{type(self).__name__} fits in one process: run it with devices: 1 "
                f"(got world size {self.trainer.world_size})"
            )
        train_set = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if train_set is None:
            raise ValueError(
                f"{type(self).__name__} fits on a DataModule's train_set (x, y, s tensors); "
                "fit it with a tabular DataModule (AdultDataModule, GermanDataModule, ...)"
            )
        x, y, s = train_set.x, train_set.y, train_set.s
        smoke = bool(self.trainer.fast_dev_run)
        if smoke and len(x) > SMOKE_ROWS:  # a smoke test: a small seeded sample only
            rows = torch.randperm(len(x))[:SMOKE_ROWS]
            x, y, s = x[rows], y[rows], s[rows]
        self.fit_on(x, y, s, smoke=smoke)

    def on_validation_epoch_start(self) -> None:
        """Restart the draws: every evaluation of the same rows draws the same labels."""
        self.draws = np.random.RandomState(self.draw_seed)

    on_test_epoch_start = on_validation_epoch_start
    on_predict_epoch_start = on_validation_epoch_start

    def configure_optimizers(self):
        """No optimiser: the model is fitted by fairlearn in :meth:`on_fit_start`."""
        return None

    def training_step(self, batch, batch_idx):
        """Nothing: the model was fitted when fitting started."""
        return None

    # --- checkpoints: the fitted model travels as skops bytes, read without running code ------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the fitted model (skops bytes, as a uint8 tensor) and the draws' seed."""
        if self.model is not None:
            data = dump_fitted_model(self.model)
            checkpoint["fairlearn_model"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            checkpoint["fairlearn_draw_seed"] = int(self.draw_seed)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Read the fitted model back; a model holding an untrusted type is refused, unloaded."""
        stored = checkpoint.get("fairlearn_model")
        if stored is not None:
            self.model = load_fitted_model(
                stored.numpy().tobytes(), f"{type(self).__name__}'s checkpoint"
            )
            self.draw_seed = int(checkpoint["fairlearn_draw_seed"])
            self.draws = np.random.RandomState(self.draw_seed)


#: The types (beyond skops' own defaults: numpy, builtins, scikit-learn estimators) that a
#: fitted ExponentiatedGradient or ThresholdOptimizer around LogisticRegression or
#: TorchMLPClassifier holds once :func:`dump_fitted_model` has made it storable. Loading
#: refuses anything else.
TRUSTED_TYPES = (
    "fairlearn.postprocessing._interpolated_thresholder.InterpolatedThresholder",
    "fairlearn.postprocessing._threshold_operation.ThresholdOperation",
    "fairlearn.postprocessing._threshold_optimizer.ThresholdOptimizer",
    "fairlearn.reductions._exponentiated_gradient._lagrangian._PredictorAsCallable",
    "fairlearn.reductions._exponentiated_gradient.exponentiated_gradient.ExponentiatedGradient",
    "fairlearn.reductions._moments.utility_parity.DemographicParity",
    "fairlearn.reductions._moments.utility_parity.EqualizedOdds",
    "lit_rev.fair.fairlearn_baselines.TorchMLPClassifier",
    "sklearn.utils._bunch.Bunch",
)

#: Attributes of a fitted fairlearn model that prediction does not read and skops cannot
#: store (pandas DataFrames, moments holding the training rows): left out of checkpoints.
FIT_DIAGNOSTICS = (
    "constraints_",
    "lambda_vecs_",
    "lambda_vecs_EG_",
    "lambda_vecs_LP_",
    "_tradeoff_curve",
    "_overall_tradeoff_curve",
)


def import_skops_io() -> Any:
    """``skops.io``, or an ImportError saying how to install it."""
    try:
        return importlib.import_module("skops.io")
    except ImportError as err:
        raise ImportError(
            f"fairlearn checkpoints are stored with skops (skops.io failed to import: {err}); "
            'install it with: pip install "lit_rev[fair]"'
        ) from err


def import_pandas() -> Any:
    """Pandas (installed with fairlearn), or an ImportError saying how to install it."""
    try:
        import pandas
    except ImportError as err:
        raise ImportError(
            f"fairlearn models hold pandas objects (pandas failed to import: {err}); "
            'install it with: pip install "lit_rev[fair]"'
        ) from err
    return pandas


def dump_fitted_model(model: Any) -> bytes:
    """A fitted fairlearn model as skops bytes that :func:`load_fitted_model` reads back.

    The fit's diagnostics (:data:`FIT_DIAGNOSTICS`) are left out, and pandas Series
    attributes are stored as their values and index (skops has no safe form for pandas):
    everything prediction reads is kept, so the loaded model predicts identically.
    """
    pd = import_pandas()

    storable = copy.copy(model)
    series = {}
    for name, value in list(vars(storable).items()):
        if name in FIT_DIAGNOSTICS:
            delattr(storable, name)
        elif isinstance(value, pd.Series):
            delattr(storable, name)
            values = value.to_numpy()
            series[name] = {
                "values": list(values) if values.dtype == object else values.copy(),
                "dtype": str(value.dtype),
                "index": value.index.to_numpy().copy(),
                "name": value.name,
            }
    return import_skops_io().dumps({"model": storable, "series": series})


def load_fitted_model(data: bytes, source: str) -> Any:
    """Read :func:`dump_fitted_model`'s bytes; refuse (load nothing) if any type is untrusted.

    Args:
        data: the stored bytes.
        source: what they were read from, for the error message.

    Raises:
        ValueError: the bytes are not a skops file, or hold a type outside skops' defaults and
            :data:`TRUSTED_TYPES` (it names them): nothing was loaded and no code ran.
    """
    pd = import_pandas()

    sio = import_skops_io()
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"{source}: the stored fairlearn model is not a skops file ({type(err).__name__}: "
            f"{err}); the checkpoint was not loaded. Checkpoints of fairlearn models written "
            "before they were stored with skops (pickled) are not read: refit the model"
        ) from err
    if untrusted:
        raise ValueError(
            f"{source}: the stored fairlearn model holds untrusted type(s) "
            f"{', '.join(untrusted)}; the checkpoint was not loaded (no code in it ran). "
            "Only the types of a fitted ExponentiatedGradient or ThresholdOptimizer are "
            "trusted (lit_rev.fair.fairlearn_baselines.TRUSTED_TYPES)"
        )
    state = sio.loads(data, trusted=list(TRUSTED_TYPES))
    model = state["model"]
    for name, stored in state["series"].items():
        if stored["dtype"] == "object":  # estimators: an array of them, not of their items
            values = np.empty(len(stored["values"]), dtype=object)
            values[:] = stored["values"]
        else:
            values = np.asarray(stored["values"], dtype=stored["dtype"])
        setattr(
            model,
            name,
            pd.Series(values, index=pd.Index(stored["index"]), name=stored["name"]),
        )
    return model


class ExponentiatedGradientModule(FairlearnModule):
    """fairlearn's ``ExponentiatedGradient`` (Agarwal et al. 2018) with demographic parity.

    The reduction fits the base estimator repeatedly on reweighted, relabelled rows and
    returns a randomised mixture of the fitted classifiers whose gap between the groups'
    selection rates is at most ``difference_bound`` (up to ``eps``).

    Args:
        constraint: ``demographic_parity`` (fairlearn's ``DemographicParity``, the default)
            or ``equalized_odds`` (``EqualizedOdds``).
        difference_bound: the largest gap the reduction aims for: the knob that sets the
            trade-off. ``None``: fairlearn's default, 0.01.
        eps: the allowed violation of that bound during the optimisation, a tolerance and not
            the trade-off: on Adult, eps from 0.01 to 0.2 at the default bound gave the same
            test discrimination (0.013 to 0.014).
        max_iter: most iterations of the reduction (a smoke run uses at most 3).
        nu, eta0: fairlearn's convergence threshold and initial step size.
        **kwargs: :class:`FairlearnModule`'s (the base estimator and its settings).
    """

    # the groups are given to it for its fit only: the mixture predicts from x alone
    reads_protected_at_prediction = False

    def __init__(
        self,
        constraint: ReductionConstraint = "demographic_parity",
        difference_bound: float | None = None,
        eps: float = 0.01,
        max_iter: int = 50,
        nu: float | None = None,
        eta0: float = 2.0,
        **kwargs,
    ):
        check_choice("constraint", constraint, ReductionConstraint)
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def make_model(self, estimator: Any) -> Any:
        """``ExponentiatedGradient(estimator, DemographicParity())`` with this module's settings."""
        reductions = import_fairlearn("reductions")
        hp = self.hparams
        moment = {
            "demographic_parity": reductions.DemographicParity,
            "equalized_odds": reductions.EqualizedOdds,
        }[hp.constraint]
        bound = {} if hp.difference_bound is None else {"difference_bound": hp.difference_bound}
        smoke = self._trainer is not None and bool(self.trainer.fast_dev_run)
        return reductions.ExponentiatedGradient(
            estimator,
            constraints=moment(**bound),
            eps=hp.eps,
            max_iter=min(hp.max_iter, 3) if smoke else hp.max_iter,
            nu=hp.nu,
            eta0=hp.eta0,
        )

    def fit_model(self, model: Any, x: np.ndarray, y: np.ndarray, s: np.ndarray) -> None:
        """``model.fit(x, y, sensitive_features=...)``."""
        model.fit(x, y, sensitive_features=self.sensitive_features(s))

    def draw(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``model.predict(x, random_state=...)``: one draw of the mixture per row."""
        return np.asarray(self.model.predict(x, random_state=self.draws))

    def positive_probability(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``model._pmf_predict(x)[:, 1]``: the mixture's probability of a positive."""
        return np.asarray(self.model._pmf_predict(x))[:, 1]


class ThresholdOptimizerModule(FairlearnModule):
    """fairlearn's ``ThresholdOptimizer`` (Hardt et al. 2016): post-processing.

    Fits the base estimator, then one (randomised) threshold per group on its scores
    (``predict_proba``) that maximises ``objective`` under the constraint. Predictions read
    the groups (it thresholds per group), which :class:`GroupAwareModule` provides.

    Args:
        constraints: ``demographic_parity`` (default) or ``equalized_odds``.
        objective: ``accuracy_score`` (default) or ``balanced_accuracy_score``.
        grid_size: thresholds tried per group.
        **kwargs: :class:`FairlearnModule`'s (the base estimator and its settings).
    """

    def __init__(
        self,
        constraints: ThresholdConstraint = "demographic_parity",
        objective: ThresholdObjective = "accuracy_score",
        grid_size: int = 1000,
        **kwargs,
    ):
        check_choice("constraints", constraints, ThresholdConstraint)
        check_choice("objective", objective, ThresholdObjective)
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def make_model(self, estimator: Any) -> Any:
        """``ThresholdOptimizer(estimator=..., predict_method="predict_proba")``."""
        postprocessing = import_fairlearn("postprocessing")
        hp = self.hparams
        return postprocessing.ThresholdOptimizer(
            estimator=estimator,
            constraints=hp.constraints,
            objective=hp.objective,
            grid_size=hp.grid_size,
            predict_method="predict_proba",
        )

    def fit_model(self, model: Any, x: np.ndarray, y: np.ndarray, s: np.ndarray) -> None:
        """``model.fit(x, y, sensitive_features=...)`` (fits the estimator, then thresholds)."""
        model.fit(x, y, sensitive_features=self.sensitive_features(s))

    def draw(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``model.predict(x, sensitive_features=s, random_state=...)``."""
        return np.asarray(
            self.model.predict(
                x, sensitive_features=self.sensitive_features(s), random_state=self.draws
            )
        )

    def positive_probability(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``model._pmf_predict(x, sensitive_features=s)[:, 1]``: the thresholds' probability."""
        pmf = self.model._pmf_predict(x, sensitive_features=self.sensitive_features(s))
        return np.asarray(pmf)[:, 1]

"""Post-hoc OOD detectors for a trained classifier, beside the density models' likelihood scores.

Every detector follows the project's convention: **higher score = more out-of-distribution**,
so its AUROC (OOD the positive class) sits beside the AUROC of raw bits/dim.

* :class:`MaxSoftmax` (Hendrycks & Gimpel 2017): ``-max_c softmax(f(x))_c``.
* :class:`MaxLogit` (Hendrycks et al. 2022): ``-max_c f(x)_c``.
* :class:`Energy` (Liu et al. 2020): the free energy ``-T logsumexp(f(x) / T)``.
* :class:`ODIN` (Liang et al. 2018): the input moved by ``epsilon`` against the gradient of
  the temperature-scaled maximum softmax, ``x~ = x - eps * sign(-grad_x log max S(x; T))``,
  then ``-max S(x~; T)``; ``T`` and ``eps`` fixed, or chosen on in-distribution validation
  data (``"auto"``, :meth:`ODIN.calibrate`).
* :class:`Mahalanobis` (Lee et al. 2018): class means and one tied covariance of the
  penultimate features on the training split; the squared Mahalanobis distance to the
  closest class mean.
* :class:`KNN` (Sun et al. 2022): the Euclidean distance from the L2-normalised penultimate
  feature to its k-th nearest L2-normalised training feature (``k="auto"`` scales ``k`` with
  the bank).

``network(x)`` must return logits ``(N, classes)``; the feature-based detectors also call
``network.features(x)`` for the penultimate features ``(N, D)`` (lit_rev's RevNet, ResNet and
``ImageClassifier`` have it). ``x`` is a batch as the DataModule's loaders give it (uint8
images for an ``ImageClassifier``, which normalises them itself).

Detectors that fit statistics (Mahalanobis, KNN) fit them in :meth:`ClassifierDetector.fit`
from the training loader alone, and a detector that chooses its settings (ODIN with
``"auto"``) chooses them in :meth:`ClassifierDetector.calibrate` from held-out
in-distribution data alone, so neither ever sees an OOD set. Statistics and scores are
float64: a confident classifier's maximum softmax sits within 1e-8 of 1, where float32 would
turn distinct images into ties. The network runs in eval mode under ``torch.no_grad`` (ODIN
takes a gradient with respect to the input only); its mode is restored afterwards.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # not tqdm.auto: its asyncio class calls iter() on the loader twice

from lit_rev.inference import evaluating
from lit_rev.options import check_choice

# The names of DETECTORS (a test keeps the two equal).
DetectorName = Literal["msp", "max_logit", "energy", "odin", "mahalanobis", "knn"]

# KNN scores queries in chunks whose distance matrix to the bank holds about this many entries
# (32 MiB of float64), so that a large training bank does not need a (batch, bank) matrix.
KNN_CHUNK_ENTRIES = 2**22

#: The grids :class:`ODIN` chooses from where its temperature or epsilon is ``"auto"``.
ODIN_TEMPERATURES = (1.0, 10.0, 100.0, 1000.0)
ODIN_EPSILONS = (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005)

#: ``k="auto"`` of :class:`KNN`: Sun et al. 2022's k for CIFAR-10 and the bank it was set for
#: (the full 50,000-image training set); k scales in proportion to the bank.
KNN_PAPER_K = 50
KNN_PAPER_BANK = 50_000


def knn_auto_k(bank: int) -> int:
    """``k`` for a bank of ``bank`` features: ``round(50 * bank / 50000)``, at least 1.

    Sun et al. 2022 keep ``k`` proportional to the share of the training set in the bank;
    50 at CIFAR-10's full 50,000 images is 1 per 1,000. ``round`` takes halves to even.
    """
    return max(1, round(KNN_PAPER_K * bank / KNN_PAPER_BANK))


def _device(network: nn.Module) -> torch.device:
    """Where the network's parameters live (CPU for a network without parameters)."""
    parameter = next(network.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _features(detector: str, network: nn.Module, x: Tensor) -> Tensor:
    """``network.features(x)`` as float64 ``(N, D)``, or a ``TypeError`` saying what is missing."""
    features = getattr(network, "features", None)
    if not callable(features):
        raise TypeError(
            f"detector {detector!r} needs penultimate features, but network "
            f"{type(network).__name__} has no features(x) method; give it one returning (N, D) "
            "features before its last linear layer, or use a logit detector (msp, max_logit, "
            "energy, odin)"
        )
    out = features(x)
    if out.dim() != 2:
        raise ValueError(
            f"detector {detector!r}: network.features(x) must return (N, D) features, got shape "
            f"{tuple(out.shape)}; flatten or pool them in features()"
        )
    return out.double()


def _training_features(
    detector: str, network: nn.Module, loader: Iterable
) -> tuple[Tensor, Tensor]:
    """Float64 penultimate features and labels of every batch ``(x, y, ...)`` of ``loader``."""
    device = _device(network)
    features, labels = [], []
    with evaluating(network):
        for batch in tqdm(loader, desc=f"{detector}: training features", disable=None, leave=False):
            x, y = batch[0], batch[1]
            features.append(_features(detector, network, x.to(device)))
            labels.append(torch.as_tensor(y).to(device))
    if not features:
        raise ValueError(
            f"detector {detector!r}: the training loader gave no batch; fit needs the "
            "in-distribution training split"
        )
    return torch.cat(features), torch.cat(labels)


class ClassifierDetector:
    """Base class of the classifier detectors: an optional :meth:`fit`, then :meth:`score`.

    Attributes:
        name: the detector's column name in a results table, e.g. ``"msp"``.
    """

    name: str = ""

    def fit(self, network: nn.Module, loader: Iterable) -> ClassifierDetector:
        """Fit statistics on the training split; detectors without statistics ignore it.

        Args:
            network: the trained classifier (``network(x)`` gives logits).
            loader: the in-distribution **training** loader, batches ``(x, y)``; never an OOD set.

        Returns:
            ``self``.
        """
        return self

    def calibrate(self, network: nn.Module, loader: Iterable) -> ClassifierDetector:
        """Choose settings on held-out in-distribution data; detectors without any ignore it.

        Args:
            network: the trained classifier.
            loader: in-distribution **validation** batches ``(x, y)``; never an OOD set.

        Returns:
            ``self``.
        """
        return self

    def score(self, network: nn.Module, x: Tensor) -> Tensor:
        """OOD scores ``(N,)`` (float64, on the CPU) of a batch ``x``; higher = more OOD."""
        raise NotImplementedError

    def describe(self) -> dict:
        """The detector's settings, for a report's metadata."""
        return {}


class _LogitDetector(ClassifierDetector):
    """A detector that is a function of the logits alone."""

    def from_logits(self, logits: Tensor) -> Tensor:
        """The OOD score of each row of float64 logits ``(N, classes)``."""
        raise NotImplementedError

    def score(self, network: nn.Module, x: Tensor) -> Tensor:
        """OOD scores ``(N,)`` (float64, on the CPU) of a batch ``x``; higher = more OOD."""
        with evaluating(network):
            logits = network(x.to(_device(network)))
        return self.from_logits(logits.double()).cpu()


class MaxSoftmax(_LogitDetector):
    """Maximum softmax probability (Hendrycks & Gimpel 2017), negated: ``-max_c p(c | x)``."""

    name = "msp"

    def from_logits(self, logits: Tensor) -> Tensor:
        """``-max_c softmax(logits)_c`` per row."""
        return -logits.softmax(dim=-1).amax(dim=-1)


class MaxLogit(_LogitDetector):
    """Maximum logit (Hendrycks et al. 2022), negated: ``-max_c f(x)_c``."""

    name = "max_logit"

    def from_logits(self, logits: Tensor) -> Tensor:
        """``-max_c logits_c`` per row."""
        return -logits.amax(dim=-1)


class Energy(_LogitDetector):
    """Free energy (Liu et al. 2020), ``E(x) = -T logsumexp(f(x) / T)``: high off the data.

    Args:
        temperature: ``T`` (1 in the paper's post-hoc detector).
    """

    name = "energy"

    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"Energy: temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def from_logits(self, logits: Tensor) -> Tensor:
        """``-T logsumexp(logits / T)`` per row."""
        return -self.temperature * torch.logsumexp(logits / self.temperature, dim=-1)

    def describe(self) -> dict:
        """The temperature."""
        return {"temperature": self.temperature}


class ODIN(ClassifierDetector):
    """ODIN (Liang et al. 2018): temperature scaling plus a small input perturbation.

    The input moves by ``epsilon`` against the gradient of the temperature-scaled maximum
    softmax, ``x~ = x - eps * sign(-grad_x log max_c S_c(x; T))`` with
    ``S(x; T) = softmax(f(x) / T)``; this raises the confidence of in-distribution inputs more
    than that of OOD ones. The score is ``-max_c S_c(x~; T)``.

    ``epsilon`` is in units of an image scaled to ``[0, 1]``, as in the paper. A network that
    declares its input range with a ``max_pixel`` attribute (``ImageClassifier``: 255 for
    uint8 images, which it normalises itself) is perturbed by ``epsilon * max_pixel`` in its
    own input units, the same step the paper takes on ``[0, 1]`` images (the sign of the
    gradient does not change under the per-channel normalisation).

    The paper tuned ``T`` and ``eps`` on OOD data. A ``temperature`` or ``epsilon`` of
    ``"auto"`` is chosen instead by :meth:`calibrate` from in-distribution validation data
    alone, with the criterion of Generalized ODIN (Hsu et al. 2020): the ``(T, eps)`` of the
    grid (``temperatures`` x ``epsilons``; a fixed value is a grid of one) that maximises the
    mean maximum softmax ``max_c S_c(x~; T)`` of the perturbed validation inputs, the first
    in grid order on a tie. That mean falls as ``T`` flattens the softmax, so with ``T`` in
    the grid the criterion favours small temperatures.

    Args:
        temperature: ``T`` (1000 in the paper), or ``"auto"``: chosen from ``temperatures``.
        epsilon: the perturbation size on ``[0, 1]`` images (0.0014 in the paper for
            CIFAR-10), or ``"auto"``: chosen from ``epsilons``.
        input_scale: the network's input units per ``[0, 1]`` unit; ``None`` reads
            ``network.max_pixel``, and 1 where the network has none.
        temperatures: the grid of an ``"auto"`` temperature.
        epsilons: the grid of an ``"auto"`` epsilon.
    """

    name = "odin"

    def __init__(
        self,
        temperature: float | Literal["auto"] = 1000.0,
        epsilon: float | Literal["auto"] = 0.0014,
        input_scale: float | None = None,
        temperatures: Sequence[float] = ODIN_TEMPERATURES,
        epsilons: Sequence[float] = ODIN_EPSILONS,
    ):
        if temperature != "auto" and not (_is_number(temperature) and temperature > 0):
            raise ValueError(
                f"ODIN: temperature must be > 0 or 'auto' (chosen on validation data), "
                f"got {temperature!r}"
            )
        if epsilon != "auto" and not (_is_number(epsilon) and epsilon >= 0):
            raise ValueError(
                "ODIN: epsilon must be >= 0 (0 turns the perturbation off) or 'auto' (chosen "
                f"on validation data), got {epsilon!r}"
            )
        if input_scale is not None and not input_scale > 0:
            raise ValueError(
                "ODIN: input_scale must be > 0 or None (read network.max_pixel), "
                f"got {input_scale!r}"
            )
        for key, grid, strict in (
            ("temperatures", temperatures, True),
            ("epsilons", epsilons, False),
        ):
            values = list(grid) if isinstance(grid, (list, tuple)) else []
            fine = [_is_number(v) and (v > 0 if strict else v >= 0) for v in values]
            if not values or not all(fine):
                raise ValueError(
                    f"ODIN: {key} must be a non-empty list of numbers {'>' if strict else '>='} "
                    f"0, got {grid!r}"
                )
        self.auto_temperature = temperature == "auto"
        self.auto_epsilon = epsilon == "auto"
        self.temperatures = [float(v) for v in temperatures]
        self.epsilons = [float(v) for v in epsilons]
        # None until calibrate chooses it
        self.temperature = None if self.auto_temperature else float(temperature)
        self.epsilon = None if self.auto_epsilon else float(epsilon)
        self.input_scale = input_scale
        self.selection: dict | None = None

    def step(self, network: nn.Module, epsilon: float | None = None) -> float:
        """The perturbation size in the network's input units: ``epsilon`` times the input scale.

        ``epsilon`` defaults to the detector's own.
        """
        scale = self.input_scale
        if scale is None:
            scale = float(getattr(network, "max_pixel", 1.0))
        return (self.epsilon if epsilon is None else epsilon) * scale

    def _settings(self) -> tuple[float, float]:
        if self.temperature is None or self.epsilon is None:
            raise RuntimeError(
                "ODIN with temperature or epsilon 'auto' scores only after calibrate(network, "
                "val_loader) has chosen them on in-distribution validation data"
            )
        return self.temperature, self.epsilon

    def _ascent(self, network: nn.Module, x: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """``x`` as float on the network's device, and ``sign(-grad_x log max_c S_c(x; T))``."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "ODIN needs the gradient with respect to the input, which torch.inference_mode "
                "forbids; score outside it (a Lightning Trainer running the scoring needs "
                "inference_mode=False)"
            )
        x = x.to(_device(network))
        x = (x if x.is_floating_point() else x.float()).detach().requires_grad_(True)
        with evaluating(network, grad=True), torch.enable_grad():
            logits = network(x)
            log_max_softmax = torch.log_softmax(logits / temperature, dim=-1).amax(dim=-1)
            (gradient,) = torch.autograd.grad(log_max_softmax.sum(), x)
        return x, torch.sign(-gradient)

    def perturb(self, network: nn.Module, x: Tensor) -> Tensor:
        """The perturbed input ``x - step * sign(-grad_x log max_c S_c(x; T))``, float."""
        temperature, epsilon = self._settings()
        x, sign = self._ascent(network, x, temperature)
        return (x - self.step(network, epsilon) * sign).detach()

    @staticmethod
    def _max_softmax(network: nn.Module, x: Tensor, temperature: float) -> Tensor:
        with evaluating(network):
            logits = network(x)
        return (logits.double() / temperature).softmax(dim=-1).amax(dim=-1)

    def score(self, network: nn.Module, x: Tensor) -> Tensor:
        """``-max_c softmax(f(x~) / T)_c`` per image (float64, on the CPU); higher = more OOD."""
        temperature, _ = self._settings()
        perturbed = self.perturb(network, x)
        return -self._max_softmax(network, perturbed, temperature).cpu()

    def calibrate(self, network: nn.Module, loader: Iterable) -> ODIN:
        """Choose each ``"auto"`` setting on in-distribution validation batches ``(x, y, ...)``.

        Every pair of the grid is scored by the mean maximum softmax of the perturbed inputs
        of ``loader`` (one pass over it); the largest wins, the first in grid order on a tie.
        Nothing is done where both settings are fixed.
        """
        if not (self.auto_temperature or self.auto_epsilon):
            return self
        temperatures = self.temperatures if self.auto_temperature else [self.temperature]
        epsilons = self.epsilons if self.auto_epsilon else [self.epsilon]
        grid = list(itertools.product(temperatures, epsilons))
        totals = torch.zeros(len(grid), dtype=torch.float64)
        images = 0
        for batch in tqdm(loader, desc="odin: choosing T and eps", disable=None, leave=False):
            for i, temperature in enumerate(temperatures):
                x, sign = self._ascent(network, batch[0], temperature)
                for j, epsilon in enumerate(epsilons):
                    perturbed = (x - self.step(network, epsilon) * sign).detach()
                    confidence = self._max_softmax(network, perturbed, temperature)
                    totals[i * len(epsilons) + j] += confidence.sum().cpu()
            images += len(batch[0])
        if not images:
            raise ValueError(
                "ODIN.calibrate: the validation loader gave no image; choosing temperature or "
                "epsilon needs in-distribution validation data (or give both as numbers)"
            )
        means = totals / images
        best = int(torch.argmax(means))  # the first maximum
        self.temperature, self.epsilon = grid[best]
        self.selection = {
            "criterion": "mean max-softmax of perturbed in-distribution validation images",
            "images": images,
            "temperatures": temperatures,
            "epsilons": epsilons,
            "mean_max_softmax": [round(float(v), 8) for v in means],
        }
        return self

    def describe(self) -> dict:
        """The temperature and the perturbation size, and how they were chosen if they were."""
        out: dict = {"temperature": self.temperature, "epsilon": self.epsilon}
        if self.auto_temperature or self.auto_epsilon:
            auto = {"temperature": self.auto_temperature, "epsilon": self.auto_epsilon}
            chosen = [key for key, is_auto in auto.items() if is_auto]
            out["chosen_on_validation"] = chosen
            if self.selection is not None:
                out["selection"] = self.selection
        return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Mahalanobis(ClassifierDetector):
    """Mahalanobis distance to the closest class mean (Lee et al. 2018), penultimate features.

    :meth:`fit` estimates, from the training split only, the class means ``mu_c`` of the
    penultimate features and one covariance shared by all classes,
    ``Sigma = (1/N) sum_i (f_i - mu_{y_i})(f_i - mu_{y_i})^T`` (the maximum-likelihood
    estimate, as the paper's code). Its pseudo-inverse is the precision: ReLU features often
    have dead dimensions, which make ``Sigma`` singular. The score is
    ``min_c (f - mu_c)^T Sigma^+ (f - mu_c)``, the negated confidence ``M(x)`` of the paper,
    without its input preprocessing or layer ensemble (the paper's base detector).
    """

    name = "mahalanobis"

    def __init__(self):
        self.classes: Tensor | None = None
        self.means: Tensor | None = None
        self.precision: Tensor | None = None

    def fit(self, network: nn.Module, loader: Iterable) -> Mahalanobis:
        """Class means and the tied precision of the training features (float64)."""
        features, labels = _training_features(self.name, network, loader)
        classes, index = torch.unique(labels, sorted=True, return_inverse=True)
        means = torch.zeros(
            len(classes), features.shape[1], dtype=features.dtype, device=features.device
        )
        means.index_add_(0, index, features)
        means /= torch.bincount(index, minlength=len(classes)).unsqueeze(1).to(features.dtype)
        centred = features - means[index]
        covariance = centred.T @ centred / len(features)
        self.classes = classes
        self.means = means
        self.precision = torch.linalg.pinv(covariance, hermitian=True)
        return self

    def score(self, network: nn.Module, x: Tensor) -> Tensor:
        """Squared Mahalanobis distance to the closest class mean (float64, on the CPU)."""
        if self.means is None or self.precision is None:
            raise RuntimeError(
                "Mahalanobis.score called before fit: call fit(network, train_loader) on the "
                "in-distribution training split first"
            )
        with evaluating(network):
            features = _features(self.name, network, x.to(_device(network)))
        features = features.to(self.means.device)
        if features.shape[1] != self.means.shape[1]:
            raise ValueError(
                f"Mahalanobis was fitted on {self.means.shape[1]}-dim features but the network "
                f"gives {features.shape[1]}; score with the network it was fitted on"
            )
        distances = []
        for mean in self.means:  # one class at a time: (N, D) memory, not (N, classes, D)
            centred = features - mean
            distances.append((centred @ self.precision * centred).sum(dim=1))
        return torch.stack(distances, dim=1).amin(dim=1).cpu()


class KNN(ClassifierDetector):
    """Distance to the k-th nearest training feature (Sun et al. 2022), on normalised features.

    :meth:`fit` keeps the L2-normalised penultimate features of the training split (the
    bank). The score of an input is the Euclidean distance from its L2-normalised feature to
    its ``k``-th nearest neighbour in the bank; for unit vectors that is ``sqrt(2 - 2 cos)``,
    a monotone function of the cosine similarity.

    Args:
        k: which neighbour (50 in the paper for CIFAR-10 with the full training set), or
            ``"auto"``: :func:`knn_auto_k` of the bank's size, set by :meth:`fit`.
    """

    name = "knn"

    def __init__(self, k: int | Literal["auto"] = 50):
        if k != "auto" and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(
                f"KNN: k must be an integer >= 1 or 'auto' (scaled with the bank), got {k!r}"
            )
        self.auto_k = k == "auto"
        self.k: int | None = None if self.auto_k else k
        self.bank: Tensor | None = None

    def fit(self, network: nn.Module, loader: Iterable) -> KNN:
        """Keep the L2-normalised training features (float64) as the bank; set an auto ``k``."""
        features, _ = _training_features(self.name, network, loader)
        if self.auto_k:
            self.k = knn_auto_k(len(features))
        assert self.k is not None
        if len(features) < self.k:
            raise ValueError(
                f"KNN: k={self.k} but the training loader gave only {len(features)} images; "
                f"lower k to at most {len(features)}"
            )
        self.bank = F.normalize(features, dim=1)
        return self

    def score(self, network: nn.Module, x: Tensor) -> Tensor:
        """Distance to the k-th nearest normalised training feature (float64, on the CPU)."""
        if self.bank is None:
            raise RuntimeError(
                "KNN.score called before fit: call fit(network, train_loader) on the "
                "in-distribution training split first"
            )
        with evaluating(network):
            features = _features(self.name, network, x.to(_device(network)))
        queries = F.normalize(features.to(self.bank.device), dim=1)
        if queries.shape[1] != self.bank.shape[1]:
            raise ValueError(
                f"KNN was fitted on {self.bank.shape[1]}-dim features but the network gives "
                f"{queries.shape[1]}; score with the network it was fitted on"
            )
        chunk = max(1, KNN_CHUNK_ENTRIES // len(self.bank))
        bank_norms = (self.bank * self.bank).sum(dim=1)
        kth = []
        for part in queries.split(chunk):
            squared = (part * part).sum(dim=1, keepdim=True) + bank_norms - 2 * part @ self.bank.T
            nearest = squared.clamp_min(0).topk(self.k, dim=1, largest=False).values
            kth.append(nearest[:, -1].sqrt())
        return torch.cat(kth).cpu()

    def describe(self) -> dict:
        """``k`` (and how it was set where it is ``"auto"``) and the size of the training bank."""
        out: dict = {"k": self.k, "bank": 0 if self.bank is None else len(self.bank)}
        if self.auto_k:
            out["k_rule"] = f"auto: round({KNN_PAPER_K} * bank / {KNN_PAPER_BANK}), at least 1"
        return out


DETECTORS: dict[str, type[ClassifierDetector]] = {
    cls.name: cls for cls in (MaxSoftmax, MaxLogit, Energy, ODIN, Mahalanobis, KNN)
}


def make_detector(name: DetectorName, **kwargs) -> ClassifierDetector:
    """The detector called ``name`` (a key of :data:`DETECTORS`), built with ``kwargs``.

    Raises:
        ValueError: ``name`` is not a detector (the message lists the choices).
        TypeError: ``kwargs`` holds an argument the detector does not take (the message
            lists those it takes).
    """
    check_choice("detector", name, DetectorName)
    cls = DETECTORS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        taken = ", ".join(inspect.signature(cls).parameters) or "no arguments"
        raise TypeError(f"detector {name!r} takes {taken}; got {', '.join(kwargs)}") from None
    return cls(**kwargs)

"""OOD scores that correct the raw likelihood, computed by the same test run as bits/dim.

Every score follows the report's convention: **higher = more out-of-distribution**, so its
AUROC (OOD the positive class) is comparable to the AUROC of raw bits/dim beside it.

* :class:`Typicality` (Nalisnick, Matsukawa, Teh & Lakshminarayanan 2019): how far a
  sample's negative log-likelihood is from the model's entropy, estimated on held-out
  in-distribution data, ``|bpd(x) - H|``; for a batch of ``M`` inputs
  ``|(1/M) sum_m bpd(x_m) - H|`` (the test is meant for batches).
* :class:`InputComplexity` (Serra et al. 2020): ``S(x) = -log2 p(x) - L(x)``, ``L(x)`` the
  length in bits of ``x`` under a real lossless codec (PNG, via Pillow); in bits/dim,
  ``bpd(x) - L(x) / D``.
* :class:`LikelihoodRatio` (Ren et al. 2019): ``-LLR(x) = -log p_theta(x) + log p_theta0(x)``
  with ``p_theta0`` a background model trained on perturbed inputs (``DensityModule(perturb=mu)``),
  in bits/dim ``bpd(x) - bpd_background(x)``.

A score has up to three parts: :meth:`OODScore.prepare` (once per evaluation, e.g. the
entropy estimate), :meth:`OODScore.columns` (extra per-image values gathered with bits/dim
in ``test_step``) and :meth:`OODScore.compute` (the final scores of one set from its
gathered columns; per image, or per batch of ``M`` images).
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lit_rev.checkpoints import read_state_dict, state_dict_mismatch
from lit_rev.density.metrics import bits_per_dim
from lit_rev.inference import evaluating, score_batches


class OODScore:
    """Base class of the OOD scores.

    Subclasses override :meth:`compute` and, where needed, :meth:`prepare` and :meth:`columns`.
    """

    def prepare(self, module, reference_loader=None, max_batches: int | None = None) -> None:
        """Called once before scoring (``module`` is the :class:`DensityModule`)."""

    def columns(
        self, module, k: torch.Tensor, scores: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Extra per-image columns for integer images ``k`` (``scores`` holds ``bpd`` etc.)."""
        return {}

    def compute(self, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named OOD scores of one set (higher = more OOD) from its gathered columns."""
        raise NotImplementedError

    def per_image(self, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The scores of :meth:`compute` that belong to single images (one value per row).

        ``predict`` writes them per image; scores of batches of images are left out.
        """
        return self.compute(columns)

    def describe(self) -> dict:
        """Values worth printing in the report's metadata (e.g. the entropy estimate)."""
        return {}


def _reference_bpd(module, loader, max_batches: int | None) -> torch.Tensor:
    with evaluating(module):
        values = score_batches(
            lambda batch: {"bpd": module.scores(batch[0].to(module.device))["bpd"]},
            loader,
            max_batches,
        )
    if not values:
        raise ValueError(
            "Typicality needs in-distribution reference data to estimate the entropy; "
            "the loader was empty"
        )
    return values["bpd"].double()


def random_batch_means(
    values: torch.Tensor, batch_size: int, num_batches: int, seed: int = 0
) -> torch.Tensor:
    """Means of ``num_batches`` random batches of ``batch_size`` distinct elements of ``values``.

    The batches are drawn from a generator seeded by ``seed``; fewer than ``batch_size``
    values give no batch.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(values)
    if n < batch_size:
        return values.new_empty(0)
    idx = torch.stack([torch.randperm(n, generator=g)[:batch_size] for _ in range(num_batches)])
    return values[idx].mean(1)


class Typicality(OODScore):
    """Typicality test (Nalisnick et al. 2019): ``|bpd - H|``, ``H`` the model's entropy.

    ``H`` is the mean bits/dim of held-out in-distribution data (the DataModule's validation
    split, else its training split), i.e. a Monte Carlo estimate of ``E_p[-log2 p(x)] / D``.

    Args:
        batch_sizes: besides single inputs (``M = 1``, score ``typicality``), score random
            batches of each ``M`` (score ``typicality_M{M}``): ``|mean_m bpd(x_m) - H|``.
        num_batches: random batches drawn per set and ``M`` (seeded).
        entropy: a fixed ``H`` (bits/dim) instead of the estimate.
        max_reference_batches: cap on reference batches for the estimate.
        seed: seed of the random batches (batches of ``M`` images use ``seed + M``).
    """

    def __init__(
        self,
        batch_sizes: list[int] | None = None,
        num_batches: int = 200,
        entropy: float | None = None,
        max_reference_batches: int | None = 20,
        seed: int = 0,
    ):
        self.batch_sizes = [10] if batch_sizes is None else list(batch_sizes)
        self.num_batches = num_batches
        self.entropy = entropy
        self.seed = seed
        self.max_reference_batches = max_reference_batches
        self._fixed = entropy is not None

    def prepare(self, module, reference_loader=None, max_batches=None):
        """Estimate the entropy ``H`` on ``reference_loader`` (unless a fixed one was given)."""
        if self._fixed:
            return
        if reference_loader is None:
            raise ValueError(
                "Typicality needs a reference loader of in-distribution data (or a fixed entropy)"
            )
        limit = max_batches if max_batches is not None else self.max_reference_batches
        self.entropy = float(_reference_bpd(module, reference_loader, limit).mean())

    def compute(self, columns):
        """``typicality`` per image and ``typicality_M{M}`` per random batch of ``M`` images."""
        if self.entropy is None:
            raise RuntimeError("Typicality.prepare was not called and no entropy was given")
        bpd = columns["bpd"].double()
        out = {"typicality": (bpd - self.entropy).abs()}
        for m in self.batch_sizes:
            if m > 1:
                means = random_batch_means(bpd, m, self.num_batches, self.seed + m)
                out[f"typicality_M{m}"] = (means - self.entropy).abs()
        return out

    def per_image(self, columns):
        """``typicality`` alone: the batch scores belong to no single image."""
        return {"typicality": self.compute(columns)["typicality"]}

    def describe(self):
        """The entropy ``H`` the scores were measured against."""
        return {"typicality_entropy_bpd": self.entropy}


def png_bits(image: torch.Tensor, n_bits: int = 8, compress_level: int = 9) -> int:
    """Length in bits of the PNG file of one integer image ``(C, H, W)`` in ``[0, 2**n_bits)``.

    Pixels are written as 8-bit values (``k << (8 - n_bits)``); gray for ``C = 1``, RGB for
    ``C = 3``.
    """
    from PIL import Image

    array = (image.to(torch.int64) << (8 - n_bits)).clamp(0, 255).to(torch.uint8).cpu().numpy()
    channels = array.shape[0]
    if channels == 1:
        pil = Image.fromarray(array[0], mode="L")
    elif channels == 3:
        pil = Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")
    else:
        raise ValueError(f"PNG needs 1 or 3 channels, got {channels}")
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=False, compress_level=compress_level)
    return 8 * buffer.getbuffer().nbytes


class InputComplexity(OODScore):
    """Input complexity (Serra et al. 2020): ``S(x) = bpd(x) - L(x) / D``.

    ``L(x)`` is the length in bits of ``x``'s PNG file, ``D`` its number of dimensions.

    A simple image (low ``L``) that the model finds likely only because it is simple gets a
    high score; the PNG header's constant cost shifts every score equally.
    """

    def __init__(self, compress_level: int = 9):
        self.compress_level = compress_level

    def columns(self, module, k, scores):
        """``png_bpd``: each image's PNG length in bits per dimension."""
        dims = k[0].numel()
        bits = [png_bits(image, module.n_bits, self.compress_level) for image in k]
        return {
            "png_bpd": torch.tensor(bits, dtype=torch.float64, device=scores["bpd"].device) / dims
        }

    def compute(self, columns):
        """``complexity = bpd - png_bpd`` per image."""
        return {"complexity": columns["bpd"].double() - columns["png_bpd"].double()}


class LikelihoodRatio(OODScore):
    """Likelihood ratio (Ren et al. 2019): ``bpd(x) - bpd_background(x)`` (``= -LLR / (D ln 2)``).

    The background model is trained on perturbed inputs, each pixel replaced by a uniform
    random value with probability ``mu`` (``DensityModule(perturb=mu)``, e.g.
    ``configs/density/background_glow_naturalpatches.yaml``); its population statistics
    then dominate, and the ratio keeps the semantic part of the likelihood.

    Args:
        ckpt_path: a Lightning checkpoint of the background ``DensityModule``.
        network: the background network; by default a copy of the main network's
            architecture (the usual set-up: same model, perturbed data).
    """

    def __init__(self, ckpt_path: str, network: nn.Module | None = None):
        self.ckpt_path = ckpt_path
        self.network = network
        self.background: nn.Module | None = None

    def prepare(self, module, reference_loader=None, max_batches=None):
        """Load the background model from ``ckpt_path`` (strictly, weights only), once."""
        if self.background is not None:
            self.background.to(module.device)
            return
        path = Path(self.ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"LikelihoodRatio: no background checkpoint at {path}; train one with "
                "DensityModule(perturb=...) first (see docs/density.md)"
            )
        state = read_state_dict(path, "LikelihoodRatio background model")
        network = self.network if self.network is not None else copy.deepcopy(module.network)
        state = {k[len("network.") :]: v for k, v in state.items() if k.startswith("network.")}
        mismatch = state_dict_mismatch(network, state)
        if mismatch:
            raise ValueError(
                f"LikelihoodRatio: the background checkpoint {path} does not fit the background "
                f"network {type(network).__name__} (the main model's architecture unless given): "
                f"{mismatch}. Train the background model with the same network settings"
            )
        network.load_state_dict(state)
        self.set_background(network.to(module.device))

    def set_background(self, network: nn.Module) -> None:
        """Use an in-memory background network (e.g. trained in a notebook)."""
        self.background = network.eval()
        for p in self.background.parameters():
            p.requires_grad_(False)

    def columns(self, module, k, scores):
        """``background_bpd``: each image's bits/dim under the background model."""
        x = module.model_input(k, noise=False)
        with torch.no_grad():
            log_prob = self.background.to(k.device).log_prob(x)
        likelihood = getattr(self.background, "likelihood", module.likelihood)
        return {"background_bpd": bits_per_dim(log_prob, k[0].numel(), module.n_bits, likelihood)}

    def compute(self, columns):
        """``likelihood_ratio = bpd - background_bpd`` per image."""
        return {"likelihood_ratio": columns["bpd"].double() - columns["background_bpd"].double()}

    def describe(self):
        """The background checkpoint the ratio was taken against."""
        return {"likelihood_ratio_background": str(self.ckpt_path)}


def perturb_images(
    k: torch.Tensor, rate: float, n_bits: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Ren et al. 2019's background-model training noise.

    Each pixel (subpixel) is replaced by a uniform random value in ``[0, 2**n_bits)`` with
    probability ``rate``.
    """
    if rate <= 0:
        return k
    mask = torch.rand(k.shape, generator=generator, device=k.device) < rate
    noise = torch.randint(
        0, 2**n_bits, k.shape, generator=generator, device=k.device, dtype=k.dtype
    )
    return torch.where(mask, noise, k)

"""The WAIC score of an ensemble of density models (Choi, Jang & Alemi 2018).

K density models trained from different seeds agree on the likelihood of in-distribution
inputs and disagree off the data. The Watanabe-Akaike information criterion rewards the
mean log-likelihood and penalises that disagreement,
``WAIC(x) = E_k[log p_k(x)] - Var_k[log p_k(x)]``; its negative is the OOD score (higher =
more OOD), the project's convention.
"""

from __future__ import annotations

import torch
from torch import Tensor


def waic_score(log_likelihoods: Tensor) -> Tensor:
    """``-(mean_k - var_k)`` of K models' log-likelihoods, per input; higher = more OOD.

    The variance is the population variance over the K models (divided by K, not K - 1),
    which is the spread of this ensemble itself rather than an estimate for a larger one.

    Args:
        log_likelihoods: ``(K, N)``, row ``k`` the log-likelihoods of the N inputs under
            model ``k``, all in one unit. Nats are the paper's; the variance scales with
            the square of the unit and the mean with the unit, so bits weigh the
            disagreement penalty differently (by ``1 / ln 2``) and can reorder inputs.

    Returns:
        ``(N,)`` float64 scores.

    Raises:
        ValueError: the input is not ``(K, N)`` with ``K >= 2``, or holds NaN or infinite values.
    """
    values = torch.as_tensor(log_likelihoods)
    if values.dim() != 2:
        raise ValueError(
            "waic_score: log_likelihoods must be (K models, N inputs), got shape "
            f"{tuple(values.shape)}; stack one row of log-likelihoods per model"
        )
    if values.shape[0] < 2:
        raise ValueError(
            f"waic_score: needs K >= 2 models for a variance, got K={values.shape[0]}; "
            "train the ensemble's members from different seeds"
        )
    values = values.double()
    finite = torch.isfinite(values)
    if not finite.all():
        bad = (~finite).nonzero().tolist()
        raise ValueError(
            f"waic_score: {len(bad)} non-finite log-likelihoods (first at [model, input] = "
            f"{bad[0]}); every model must give a finite log-likelihood for every input"
        )
    mean = values.mean(dim=0)
    variance = values.var(dim=0, correction=0)
    return -(mean - variance)

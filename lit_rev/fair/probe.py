"""Leakage probe: can a *fresh* classifier read the protected attribute off a representation?

An adversarial head that sits near chance during training certifies nothing: it may just be
losing a game the encoder keeps changing. The probe freezes the representation, fits a new
classifier on the training split (logistic regression or a small MLP, scikit-learn) and
scores it on the test split. Compare its accuracy with ``majority`` (the test rate of the
training split's most common group): a fair representation leaves the probe at that rate and
its AUROC at 0.5.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from lit_rev.options import check_choice

#: The leakage probes: logistic regression or a small MLP (scikit-learn).
Probe = Literal["logistic", "mlp"]


def leakage_probe(
    train_z: np.ndarray,
    train_s: np.ndarray,
    test_z: np.ndarray,
    test_s: np.ndarray,
    kind: Probe = "logistic",
    max_train: int | None = 20000,
    seed: int = 0,
) -> dict[str, float]:
    """Fit a fresh classifier on ``(train_z, train_s)`` and score it on the test split.

    Args:
        train_z: training representation, ``(N, d)``.
        train_s: training group codes, ``(N,)``.
        test_z: test representation, ``(M, d)``.
        test_s: test group codes, ``(M,)``.
        kind: ``logistic`` (logistic regression) or ``mlp`` (one hidden layer of 64).
        max_train: cap on the training rows, a seeded random sample; ``None`` for all.
        seed: seed of that sample and of the MLP.

    Returns:
        The test ``accuracy``, ``auroc`` (one-vs-rest macro average for more than two groups;
        NaN if a group is missing from the test split) and the ``majority`` rate.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_choice("kind", kind, Probe)
    train_s, test_s = np.asarray(train_s).ravel(), np.asarray(test_s).ravel()
    if max_train is not None and len(train_z) > max_train:
        pick = np.random.default_rng(seed).permutation(len(train_z))[:max_train]
        train_z, train_s = train_z[pick], train_s[pick]
    majority_group = np.bincount(train_s).argmax()
    result = {"majority": float((test_s == majority_group).mean())}
    if len(np.unique(train_s)) < 2:  # nothing to learn: the probe can only say the majority
        return {**result, "accuracy": result["majority"], "auroc": math.nan}
    if kind == "logistic":
        classifier = LogisticRegression(max_iter=1000)
    else:
        classifier = MLPClassifier(
            hidden_layer_sizes=(64,), max_iter=100, early_stopping=True, random_state=seed
        )
    probe = make_pipeline(StandardScaler(), classifier).fit(train_z, train_s)
    result["accuracy"] = float((probe.predict(test_z) == test_s).mean())
    proba = probe.predict_proba(test_z)
    classes = probe.classes_
    try:
        if len(classes) == 2:
            result["auroc"] = float(roc_auc_score(test_s == classes[1], proba[:, 1]))
        else:
            result["auroc"] = float(roc_auc_score(test_s, proba, multi_class="ovr", labels=classes))
    except ValueError:  # a group absent from the test split
        result["auroc"] = math.nan
    return result

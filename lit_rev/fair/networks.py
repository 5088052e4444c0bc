"""Plain ``nn.Module`` building blocks of the fairness models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int | None,
    dropout: float = 0.0,
    final_activation: bool = False,
) -> nn.Sequential:
    """``Linear-ReLU(-Dropout)`` per hidden width, then a ``Linear`` to ``out_dim`` (if given).

    ``final_activation`` puts a ReLU after that last layer too (an encoder's output).
    """
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
        if final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AttributeHeads(nn.Module):
    """One classifier per protected attribute on a shared input.

    Each head gives a single logit for a binary attribute, ``K`` logits for a categorical one
    with ``K`` groups.
    """

    def __init__(
        self,
        in_dim: int,
        classes: Sequence[int],
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
    ):
        super().__init__()
        self.classes = list(classes)
        self.heads = nn.ModuleList(
            mlp(in_dim, hidden, 1 if k == 2 else k, dropout) for k in self.classes
        )

    def forward(self, z: Tensor) -> list[Tensor]:
        """Each head's logits on ``z``, in attribute order."""
        return [head(z) for head in self.heads]

    def losses(self, z: Tensor, s: Tensor) -> Tensor:
        """Cross-entropy of each head against its column of ``s`` ``(B, A)``; shape ``(A,)``."""
        return torch.stack([attribute_loss(logits, s[:, a]) for a, logits in enumerate(self(z))])


def attribute_loss(logits: Tensor, groups: Tensor) -> Tensor:
    """Cross-entropy of one head's logits against the group codes (binary or categorical)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), groups.float())
    return F.cross_entropy(logits, groups)


def attribute_probabilities(logits: Tensor) -> Tensor:
    """``(B, K)`` group probabilities from a head's logits (binary heads give ``K = 2``)."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    return logits.softmax(-1)

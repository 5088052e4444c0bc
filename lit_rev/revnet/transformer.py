"""A reversible transformer: attention as F, the MLP as G, coupled on the feature axis.

As in the Reformer (Kitaev et al. 2020) and the reversible ViT (Mangalam et al. 2022), a
pre-norm transformer layer becomes one :class:`~lit_rev.revnet.reversible.ReversibleBlock`
on the two feature halves of a ``(batch, tokens, width)`` stream:

    y1 = x1 + Attention(LayerNorm(x2))
    y2 = x2 + MLP(LayerNorm(y1))

so a stack of them, run by a memory-saving
:class:`~lit_rev.revnet.reversible.ReversibleSequence`, keeps no per-layer activation for the
backward: the bytes saved are the same for 4 layers and for 16. :class:`ReversibleViT` is a
small vision transformer built that way, a drop-in ``backbone`` for
:class:`~lit_rev.revnet.module.ImageClassifier`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_rev.revnet.reversible import CouplingKind, ReversibleBlock, ReversibleSequence


def _pair(out: torch.Tensor, affine: bool):
    """``out`` as it is (additive coupling) or cut in ``(s, t)`` on features (affine)."""
    return tuple(out.chunk(2, dim=-1)) if affine else out


class SelfAttention(nn.Module):
    """F of a reversible transformer layer: LayerNorm, multi-head self-attention, dropout.

    Args:
        features: features of the half it acts on (a multiple of ``heads``).
        heads: attention heads.
        dropout: dropout on the attention weights and on the output (0: none).
        affine: return ``(s, t)`` for the affine coupling (the output projection is then twice
            as wide) instead of one tensor.
    """

    def __init__(self, features: int, heads: int, dropout: float = 0.0, affine: bool = False):
        super().__init__()
        if features % heads:
            raise ValueError(
                f"heads={heads} must divide the features of a half ({features}); pick a width "
                "that is 2 * heads * (head size)"
            )
        self.heads = heads
        self.dropout = dropout
        self.affine = affine
        self.norm = nn.LayerNorm(features)
        self.qkv = nn.Linear(features, 3 * features)
        self.out = nn.Linear(features, features * (2 if affine else 1))
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor):
        """Attention output for ``x`` of shape ``(batch, tokens, features)``."""
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )
        p = self.dropout if self.training else 0.0
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        out = self.out_dropout(self.out(attended.transpose(1, 2).reshape(b, n, d)))
        return _pair(out, self.affine)


class FeedForward(nn.Module):
    """G of a reversible transformer layer: LayerNorm, Linear, GELU, dropout, Linear, dropout.

    Args:
        features: features of the half it acts on.
        hidden: width of the hidden layer.
        dropout: dropout after the GELU and on the output (0: none).
        affine: return ``(s, t)`` for the affine coupling instead of one tensor.
    """

    def __init__(self, features: int, hidden: int, dropout: float = 0.0, affine: bool = False):
        super().__init__()
        self.affine = affine
        self.net = nn.Sequential(
            nn.LayerNorm(features),
            nn.Linear(features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, features * (2 if affine else 1)),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor):
        """MLP output for ``x`` of shape ``(batch, tokens, features)``."""
        return _pair(self.net(x), self.affine)


class ReversibleTransformerBlock(ReversibleBlock):
    """One pre-norm transformer layer as a reversible block on the feature halves.

    ``F`` is :class:`SelfAttention`, ``G`` :class:`FeedForward`, both on ``width // 2``
    features; the split is on the last axis of ``(batch, tokens, width)``.

    Args:
        width: features of the whole stream (even; each half has ``width // 2``).
        heads: attention heads (dividing ``width // 2``).
        mlp_ratio: the MLP's hidden width over ``width // 2``.
        dropout: dropout in attention and MLP; replayed exactly in the memory-saving backward.
        coupling: ``"additive"`` or ``"affine"`` (F and G then return ``(s, t)``).
    """

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        coupling: CouplingKind = "additive",
    ):
        if width % 2:
            raise ValueError(f"width={width} must be even: the block splits it in two halves")
        half = width // 2
        affine = coupling == "affine"
        super().__init__(
            SelfAttention(half, heads, dropout, affine),
            FeedForward(half, max(1, round(half * mlp_ratio)), dropout, affine),
            split_dim=-1,
            coupling=coupling,
        )


class ReversibleViT(nn.Module):
    """A small vision transformer whose layers are reversible: memory flat in depth.

    Patches (a strided convolution) plus learned position embeddings -> ``depth`` layers of
    :class:`ReversibleTransformerBlock` in a :class:`ReversibleSequence` -> LayerNorm, mean over
    tokens, linear head. With ``memory_saving`` the backward stores only the embedding's and
    the head's activations and the last layer's output, whatever ``depth`` is.

    Args:
        image_size: height and width of the images (a multiple of ``patch_size``).
        patch_size: side of the square patches (tokens = ``(image_size / patch_size) ** 2``).
        in_channels: image channels (1 for MNIST).
        num_classes: size of the linear head.
        width: features per token (even).
        depth: reversible transformer layers.
        heads: attention heads (dividing ``width // 2``).
        mlp_ratio: the MLP's hidden width over ``width // 2``.
        dropout: dropout inside the layers.
        coupling: ``"additive"`` or ``"affine"``.
        memory_saving: reconstruct the layers' activations in the backward instead of storing
            them.
        preserve_rng_state: replay dropout in the memory-saving backward (see
            :class:`ReversibleSequence`).
    """

    reversible = True

    def __init__(
        self,
        image_size: int = 28,
        patch_size: int = 4,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 64,
        depth: int = 4,
        heads: int = 2,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        coupling: CouplingKind = "additive",
        memory_saving: bool = True,
        preserve_rng_state: bool = True,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide image_size={image_size}; pick a divisor"
            )
        self.num_classes = num_classes
        self.image_size = image_size
        tokens = (image_size // patch_size) ** 2
        self.embed = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, tokens, width))
        self.body = ReversibleSequence(
            [
                ReversibleTransformerBlock(width, heads, mlp_ratio, dropout, coupling)
                for _ in range(depth)
            ],
            memory_saving=memory_saving,
            preserve_rng_state=preserve_rng_state,
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.position, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        fan_in = self.embed.in_channels * math.prod(self.embed.kernel_size)
        nn.init.trunc_normal_(self.embed.weight, std=1 / math.sqrt(fan_in))

    @property
    def memory_saving(self) -> bool:
        """Whether the layers use the reconstructing backward."""
        return self.body.memory_saving

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        self.body.memory_saving = bool(value)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings plus positions, ``(batch, tokens, width)``, of images ``x``."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"ReversibleViT(image_size={self.image_size}) got images of size "
                f"{tuple(x.shape[-2:])}; set image_size to the data's"
            )
        return self.embed(x).flatten(2).transpose(1, 2) + self.position

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(batch, width)``: normalised tokens averaged, before the head."""
        return self.norm(self.body(self.tokens(x))).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` of images ``(batch, channels, size, size)``."""
        return self.head(self.features(x))

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

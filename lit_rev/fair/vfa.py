"""VFA: the Variational Fair Autoencoder (Louizos, Swersky, Li, Welling & Zemel, ICLR 2016).

The generative model (their Fig. 1, with the semi-supervised label branch)::

    z2 ~ N(0, I),  y ~ p(y),  z1 ~ p(z1 | z2, y),  x ~ p(x | z1, s)

The decoder is given ``s``, so ``z1`` has no need to carry it: ``s`` is factored out of
``z1``. Inference::

    q(z1 | x, s),  q(z2 | z1, y),  q(y | z1)

All three are diagonal Gaussians or a Bernoulli computed by small MLPs. Every training row
has its label, so the ELBO is the labelled one (Kingma et al. 2014's M2 term; the unlabelled
term, which sums over ``y``, has no rows here)::

    L = E_q[ −log p(x | z1, s) ]                                        reconstruction
      + E_q[ log q(z1 | x, s) − log p(z1 | z2, y) ]                     KL of z1 (one sample)
      + KL( q(z2 | z1, y) ‖ N(0, I) )                                   KL of z2 (closed form)
      + α · CE(y, q(y | z1))                                            the label branch
      + β · Σ_attributes MMD²( q(z1 | s=a), q(z1 | s=b) )               MMD penalty (Eq. 9)

``p(x | z1, s)`` is a unit-variance Gaussian on the standardised, one-hot encoded inputs
(``½‖x − x̂‖²`` up to a constant); the label prior ``p(y)`` is a constant and left out.

The MMD penalty is the biased (V-statistic) estimate of the squared maximum mean discrepancy
between the posterior means of ``z1`` in two groups of the batch, with the kernel
``k(a, b) = Σ_σ exp(−‖a − b‖² / (2σ²))`` summed over the bandwidths ``mmd_bandwidths``
(default σ ∈ {1, 2, 4, 8}, which spans the distances between codes of a 16-dimensional
``z1`` near its N(0, I) prior, about 4 to 8 apart). Louizos et al. use one Gaussian kernel
with random Fourier features; the exact estimate is cheap at tabular batch sizes. A
categorical attribute adds the MMD of every pair of its groups present in the batch; a
group with fewer than two rows in the batch is skipped.

Predictions are ``q(y = 1 | z1)`` at the posterior mean of ``q(z1 | x, s)``, which reads
``s``: :class:`~lit_rev.fair.group_aware.GroupAwareModule` hands the groups to it. The
representation the leakage probe reads is that posterior mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_rev.fair.group_aware import GroupAwareModule
from lit_rev.fair.networks import mlp


def mmd_squared(a: Tensor, b: Tensor, bandwidths: Sequence[float] = (1.0, 2.0, 4.0, 8.0)) -> Tensor:
    """Biased estimate of MMD² between the samples ``a`` ``(N, d)`` and ``b`` ``(M, d)``.

    ``mean k(a, a') + mean k(b, b') − 2 mean k(a, b)`` with the Gaussian kernels of
    ``bandwidths`` (σ) summed: the squared distance between the samples' mean embeddings,
    hence never negative and exactly 0 for identical samples.
    """
    both = torch.cat([a, b])
    squared = torch.cdist(both, both).pow(2)
    kernel = sum(torch.exp(-squared / (2.0 * sigma**2)) for sigma in bandwidths)
    n = len(a)
    within_a = kernel[:n, :n].mean()
    within_b = kernel[n:, n:].mean()
    across = kernel[:n, n:].mean()
    return (within_a + within_b - 2.0 * across).clamp_min(0.0)


def gaussian_log_density(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """``(B,)`` log N(z; mean, diag(exp(log_var))), summed over the last dimension."""
    return -0.5 * (
        (z - mean).pow(2) / log_var.exp() + log_var + torch.log(torch.tensor(2.0 * torch.pi))
    ).sum(-1)


class GaussianHead(nn.Module):
    """An MLP giving the mean and log-variance of a diagonal Gaussian."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int):
        super().__init__()
        self.body = mlp(in_dim, hidden, 2 * out_dim)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_var)``, the log-variance clamped to [−10, 10] for stability."""
        mean, log_var = self.body(inputs).chunk(2, dim=-1)
        return mean, log_var.clamp(-10.0, 10.0)


class VFAModule(GroupAwareModule):
    """The Variational Fair Autoencoder; see the module docstring for the model and loss.

    Args:
        z1_dim: size of ``z1``, the fair code (and the representation).
        z2_dim: size of ``z2``, the label branch's latent.
        hidden: hidden widths of every encoder and decoder MLP.
        label_weight: α, the weight of the label term ``CE(y, q(y | z1))``.
        mmd_weight: β, the weight of the MMD penalty (0: a plain semi-supervised VAE).
        mmd_bandwidths: the Gaussian kernel bandwidths σ of the MMD.
        lr: Adam learning rate.
        **kwargs: :class:`~lit_rev.fair.base.FairModule`'s (probes, consistency_k, shapes).
    """

    def __init__(
        self,
        z1_dim: int = 16,
        z2_dim: int = 8,
        hidden: list[int] = [64],  # noqa: B006 (never mutated; a list reads best in YAML)
        label_weight: float = 1.0,
        mmd_weight: float = 1.0,
        mmd_bandwidths: list[float] = [1.0, 2.0, 4.0, 8.0],  # noqa: B006
        lr: float = 1e-3,
        **kwargs,
    ):
        if mmd_weight < 0 or label_weight < 0:
            raise ValueError(
                f"mmd_weight and label_weight must be >= 0, got {mmd_weight} and {label_weight}"
            )
        if not mmd_bandwidths or min(mmd_bandwidths) <= 0:
            raise ValueError(f"mmd_bandwidths must be positive numbers, got {mmd_bandwidths}")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Encoders q(z1|x,s), q(z2|z1,y), q(y|z1); decoders p(z1|z2,y), p(x|z1,s)."""
        hp = self.hparams
        self.classes = list(protected_classes)
        s_dim = sum(self.classes)
        self.encoder_z1 = GaussianHead(input_dim + s_dim, hp.hidden, hp.z1_dim)
        self.encoder_z2 = GaussianHead(hp.z1_dim + 1, hp.hidden, hp.z2_dim)
        self.classifier = mlp(hp.z1_dim, hp.hidden, 1)
        self.decoder_z1 = GaussianHead(hp.z2_dim + 1, hp.hidden, hp.z1_dim)
        self.decoder_x = mlp(hp.z1_dim + s_dim, list(reversed(hp.hidden)), input_dim)

    def one_hot(self, s: Tensor) -> Tensor:
        """``(B, Σ K_a)``: every protected attribute's group, one-hot, side by side."""
        return torch.cat(
            [F.one_hot(s[:, a].long(), k).float() for a, k in enumerate(self.classes)], dim=-1
        )

    def encode(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of ``q(z1 | x, s)``."""
        return self.encoder_z1(torch.cat([x, self.one_hot(s)], dim=-1))

    def representation(self, x: Tensor) -> Tensor:
        """The posterior mean of ``z1`` (reads the groups: see ``GroupAwareModule``)."""
        return self.encode(x, self.groups)[0]

    def predict_proba(self, x: Tensor) -> Tensor:
        """``q(y = 1 | z1)`` at the posterior mean of ``z1``."""
        return torch.sigmoid(self.classifier(self.representation(x)).squeeze(-1))

    def mmd_penalty(self, z: Tensor, s: Tensor) -> Tensor:
        """Σ over attributes and pairs of groups (≥ 2 rows each) of MMD² between their codes."""
        total = torch.zeros((), device=z.device)
        for a in range(s.shape[1]):
            groups = [g for g in s[:, a].unique() if int((s[:, a] == g).sum()) >= 2]
            for i, first in enumerate(groups):
                for second in groups[i + 1 :]:
                    total = total + mmd_squared(
                        z[s[:, a] == first], z[s[:, a] == second], self.hparams.mmd_bandwidths
                    )
        return total

    def losses(self, x: Tensor, y: Tensor, s: Tensor) -> dict[str, Tensor]:
        """Each term of the loss on one batch (means over rows) and the weighted ``loss``."""
        hp = self.hparams
        y_column = y.float()[:, None]
        mean1, log_var1 = self.encode(x, s)
        z1 = mean1 + torch.randn_like(mean1) * (0.5 * log_var1).exp()
        mean2, log_var2 = self.encoder_z2(torch.cat([z1, y_column], dim=-1))
        z2 = mean2 + torch.randn_like(mean2) * (0.5 * log_var2).exp()
        prior_mean1, prior_log_var1 = self.decoder_z1(torch.cat([z2, y_column], dim=-1))
        x_hat = self.decoder_x(torch.cat([z1, self.one_hot(s)], dim=-1))

        reconstruction = 0.5 * (x - x_hat).pow(2).sum(-1).mean()
        kl_z1 = (
            gaussian_log_density(z1, mean1, log_var1)
            - gaussian_log_density(z1, prior_mean1, prior_log_var1)
        ).mean()
        kl_z2 = (0.5 * (mean2.pow(2) + log_var2.exp() - 1.0 - log_var2).sum(-1)).mean()
        label = F.binary_cross_entropy_with_logits(self.classifier(z1).squeeze(-1), y.float())
        mmd = self.mmd_penalty(mean1, s)
        loss = reconstruction + kl_z1 + kl_z2 + hp.label_weight * label + hp.mmd_weight * mmd
        return {
            "loss": loss,
            "reconstruction": reconstruction,
            "kl_z1": kl_z1,
            "kl_z2": kl_z2,
            "label": label,
            "mmd": mmd,
        }

    def configure_optimizers(self):
        """Adam on every network."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def training_step(self, batch, batch_idx):
        """One step on the weighted loss; logs each term."""
        x, y, s = batch
        out = self.losses(x, y, s)
        self.log("train/loss", out["loss"], prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"})
        return out["loss"]

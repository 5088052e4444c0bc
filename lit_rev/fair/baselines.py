"""The baselines GRAD is compared with, under the same CLI, data and metrics.

- Vanilla: :class:`~lit_rev.fair.grad.GRADModule` with ``lambda_: 0`` (same network, no
  adversarial pressure on the encoder).
- :class:`ALFRModule`: Edwards & Storkey 2016, "Censoring representations with an adversary".
- :class:`LFRModule`: Zemel et al. 2013, "Learning fair representations", in torch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_rev.fair.base import FairModule
from lit_rev.fair.networks import AttributeHeads, mlp


class ALFRModule(FairModule):
    """Adversarially learned fair representation (Edwards & Storkey 2016).

    Encoder ``z = f(x)``, decoder ``x̂ = g(z)``, classifier ``ŷ = k(z)``, adversary ``ŝ = h(z)``.
    Unlike GRAD there is no reversal layer: updates alternate. The adversary takes
    ``adversary_steps`` steps minimising its cross-entropy ``D`` on the detached code; then
    encoder, decoder and classifier take one step on

        α · ‖x − x̂‖²  +  β · CE(y, ŷ)  −  γ · D

    (Edwards & Storkey, Eq. 5, with the adversary's parameters held fixed).

    Args:
        hidden, head_hidden, decoder_hidden: widths as in GRADModule.
        recon_weight, label_weight, adversary_weight: α, β, γ.
        adversary_steps: adversary updates per encoder update.
        lr: Adam learning rate of both players.
    """

    def __init__(
        self,
        hidden: list[int] = [64, 64],  # noqa: B006
        head_hidden: list[int] = [64],  # noqa: B006
        decoder_hidden: list[int] | None = None,
        recon_weight: float = 1.0,
        label_weight: float = 1.0,
        adversary_weight: float = 1.0,
        adversary_steps: int = 1,
        lr: float = 1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        hp = self.hparams
        self.encoder = mlp(input_dim, hp.hidden[:-1], hp.hidden[-1], final_activation=True)
        decoder_hidden = hp.decoder_hidden if hp.decoder_hidden is not None else list(reversed(hp.hidden[:-1]))
        self.decoder = mlp(hp.hidden[-1], decoder_hidden, input_dim)
        self.classifier = nn.Linear(hp.hidden[-1], 1)
        self.adversary = AttributeHeads(hp.hidden[-1], protected_classes, hp.head_hidden)

    def representation(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def predict_proba(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.classifier(self.encoder(x)).squeeze(-1))

    def configure_optimizers(self):
        players = [self.encoder, self.decoder, self.classifier]
        model = torch.optim.Adam([p for m in players for p in m.parameters()], lr=self.hparams.lr)
        adversary = torch.optim.Adam(self.adversary.parameters(), lr=self.hparams.lr)
        return [model, adversary]

    def training_step(self, batch, batch_idx):
        x, y, s = batch
        model_opt, adversary_opt = self.optimizers()
        hp = self.hparams
        z = self.encoder(x)
        for _ in range(hp.adversary_steps):
            self.step_without_ddp_hooks(adversary_opt, self.adversary.losses(z.detach(), s).sum(), self.adversary)

        reconstruction = F.mse_loss(self.decoder(z), x)
        label = F.binary_cross_entropy_with_logits(self.classifier(z).squeeze(-1), y)
        adversary = self.adversary.losses(z, s).sum()
        model_opt.zero_grad()
        self.manual_backward(hp.recon_weight * reconstruction + hp.label_weight * label - hp.adversary_weight * adversary)
        model_opt.step()  # the adversary's own gradients from this pass are discarded (zero_grad above)

        self.log_dict({"train/reconstruction": reconstruction, "train/label_loss": label, "train/adversary_loss": adversary})


class LFRModule(FairModule):
    """Learning Fair Representations (Zemel et al. 2013), trained with Adam instead of L-BFGS.

    ``K`` prototypes ``v_k`` in input space; row ``n`` maps to the soft assignment

        M_nk = softmax_k( −Σ_d α_d (x_nd − v_kd)² )                         (Eq. 2, 3)

    which is its representation. Predictions ``p_n = Σ_k M_nk w_k`` with ``w_k ∈ [0, 1]``
    (Eq. 6). The loss ``A_z L_z + A_x L_x + A_y L_y`` (Eq. 4):

        L_z = Σ_k | mean_{s=1} M_nk − mean_{s=0} M_nk |       statistical parity of the codes (Eq. 5)
        L_x = mean_n ‖x_n − Σ_k M_nk v_k‖²                     reconstruction (Eq. 6)
        L_y = mean_n CE(y_n, p_n)                              prediction (Eq. 7)

    computed per batch. For a categorical attribute ``L_z`` sums the gaps over all pairs of
    groups; for several attributes the ``L_z`` add up. One ``α`` for all groups (Zemel et al. fit
    one per group).

    Args:
        prototypes: ``K``.
        fairness_weight, recon_weight, label_weight: ``A_z``, ``A_x``, ``A_y`` (AIF360's defaults).
        lr: Adam learning rate.
    """

    def __init__(
        self,
        prototypes: int = 10,
        fairness_weight: float = 50.0,
        recon_weight: float = 0.01,
        label_weight: float = 1.0,
        lr: float = 1e-2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        k = self.hparams.prototypes
        self.prototypes = nn.Parameter(torch.randn(k, input_dim) * 0.5)
        self.log_alpha = nn.Parameter(torch.zeros(input_dim))  # α_d = exp(log α_d) > 0
        self.w_logit = nn.Parameter(torch.zeros(k))  # w_k = sigmoid(.) ∈ (0, 1)

    def representation(self, x: Tensor) -> Tensor:
        sq_dist = ((x[:, None, :] - self.prototypes[None]) ** 2 * self.log_alpha.exp()).sum(-1)
        return torch.softmax(-sq_dist, dim=1)

    def predict_proba(self, x: Tensor) -> Tensor:
        return self.representation(x) @ torch.sigmoid(self.w_logit)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def training_step(self, batch, batch_idx):
        x, y, s = batch
        hp = self.hparams
        m = self.representation(x)
        p = (m @ torch.sigmoid(self.w_logit)).clamp(1e-6, 1 - 1e-6)
        label = F.binary_cross_entropy(p, y)
        reconstruction = ((x - m @ self.prototypes) ** 2).sum(1).mean()
        parity = torch.zeros((), device=x.device)
        for a in range(s.shape[1]):
            present = [g for g in s[:, a].unique()]
            means = torch.stack([m[s[:, a] == g].mean(0) for g in present])  # (groups, K)
            parity = parity + (means[:, None] - means[None]).abs().sum() / 2  # each pair once
        loss = hp.fairness_weight * parity + hp.recon_weight * reconstruction + hp.label_weight * label
        self.log_dict({"train/loss": loss, "train/parity": parity, "train/label_loss": label}, prog_bar=False)
        return loss

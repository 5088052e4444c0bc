"""The baselines GRAD is compared with, under the same CLI, data and metrics.

- Vanilla: :class:`~lit_rev.fair.grad.GRADModule` with ``lambda_: 0`` (same network, no
  adversarial pressure on the encoder).
- :class:`ALFRModule`: Edwards & Storkey 2016, "Censoring representations with an adversary".
- :class:`LFRModule`: Zemel et al. 2013, "Learning fair representations", in torch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_rev.fair.base import FairModule
from lit_rev.fair.networks import AttributeHeads, mlp
from lit_rev.options import check_choice

#: How LFR's prototypes and weights start: seeded on training rows, or at random.
LFRInit = Literal["kmeans++", "normal"]


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
        """Encoder, decoder, label classifier and one adversary head per attribute."""
        hp = self.hparams
        self.encoder = mlp(input_dim, hp.hidden[:-1], hp.hidden[-1], final_activation=True)
        decoder_hidden = (
            hp.decoder_hidden if hp.decoder_hidden is not None else list(reversed(hp.hidden[:-1]))
        )
        self.decoder = mlp(hp.hidden[-1], decoder_hidden, input_dim)
        self.classifier = nn.Linear(hp.hidden[-1], 1)
        self.adversary = AttributeHeads(hp.hidden[-1], protected_classes, hp.head_hidden)

    def representation(self, x: Tensor) -> Tensor:
        """The encoder's code ``z``."""
        return self.encoder(x)

    def predict_proba(self, x: Tensor) -> Tensor:
        """Positive-label probability of the classifier on the code."""
        return torch.sigmoid(self.classifier(self.encoder(x)).squeeze(-1))

    def configure_optimizers(self):
        """One Adam for encoder, decoder and classifier; one for the adversary."""
        players = [self.encoder, self.decoder, self.classifier]
        model = torch.optim.Adam([p for m in players for p in m.parameters()], lr=self.hparams.lr)
        adversary = torch.optim.Adam(self.adversary.parameters(), lr=self.hparams.lr)
        return [model, adversary]

    def training_step(self, batch, batch_idx):
        """``adversary_steps`` adversary updates on the detached code, then one model update."""
        x, y, s = batch
        model_opt, adversary_opt = self.optimizers()
        hp = self.hparams
        z = self.encoder(x)
        for _ in range(hp.adversary_steps):
            self.step_without_ddp_hooks(
                adversary_opt, self.adversary.losses(z.detach(), s).sum(), self.adversary
            )

        reconstruction = F.mse_loss(self.decoder(z), x)
        label = F.binary_cross_entropy_with_logits(self.classifier(z).squeeze(-1), y)
        adversary = self.adversary.losses(z, s).sum()
        model_opt.zero_grad()
        self.manual_backward(
            hp.recon_weight * reconstruction
            + hp.label_weight * label
            - hp.adversary_weight * adversary
        )
        # the adversary's own gradients from this pass are discarded (zero_grad above)
        model_opt.step()

        self.log_dict(
            {
                "train/reconstruction": reconstruction,
                "train/label_loss": label,
                "train/adversary_loss": adversary,
            }
        )


class LFRModule(FairModule):
    """Learning Fair Representations (Zemel et al. 2013), trained with Adam.

    ``K`` prototypes ``v_k`` in input space; row ``n`` maps to the soft assignment

        M_nk = softmax_k( −Σ_d α_d (x_nd − v_kd)² )                         (Eq. 2, 3)

    which is its representation. Predictions ``p_n = Σ_k M_nk w_k`` with ``w_k ∈ [0, 1]``
    (Eq. 6). The loss ``A_z L_z + A_x L_x + A_y L_y`` (Eq. 4):

        L_z = Σ_k | mean_{s=1} M_nk − mean_{s=0} M_nk |   statistical parity of codes (Eq. 5)
        L_x = mean_n ‖x_n − Σ_k M_nk v_k‖²                 reconstruction (Eq. 6)
        L_y = mean_n CE(y_n, p_n)                          prediction (Eq. 7)

    ``L_x`` and ``L_y`` are means over rows where the paper sums them, so ``A_z`` here is the
    paper's ``A_z / N``; AIF360 also averages ``L_z`` over ``k``, so its default ``A_z = 50`` with
    ``k = 5`` is ``A_z = 10`` here. For a categorical attribute ``L_z`` sums the gaps over all pairs
    of groups; for several attributes the ``L_z`` add up. One ``α`` for all groups: Zemel et al.
    fit one per group, which needs ``s`` at prediction time.

    Train it full batch (``batch_size`` ≥ the training set), as Zemel et al. and AIF360 do:
    ``L_z`` is computed per batch, and a batch's noisy group means favour a constant code, which
    scores exactly 0, so mini-batches collapse it to a constant predictor. ``init: kmeans++``
    (default) seeds the prototypes on training rows and sets each ``w_k`` to the label rate of
    the rows softly assigned to ``v_k``: random prototypes leave most of them without gradient.
    docs/fair.md has the measurements behind both choices.

    Data-dependent initialisation happens in ``setup("fit")`` from the DataModule's
    ``train_set`` (or, without one, from the first training batch), once: a module loaded from a
    checkpoint keeps its parameters (the ``initialised`` buffer says so).

    Args:
        prototypes: ``K``.
        fairness_weight, recon_weight, label_weight: ``A_z``, ``A_x``, ``A_y`` (in this
            normalisation the useful ``A_z`` lie far below AIF360's 50; see docs/fair.md).
        lr: Adam learning rate.
        init: ``kmeans++`` (prototypes seeded on training rows, ``w`` from their label rates) or
            ``normal`` (prototypes ``N(0, 0.5²)``, ``w = 0.5``: the old start, kept for comparison;
            it collapses with mini-batches, not full-batch).
    """

    def __init__(
        self,
        prototypes: int = 10,
        fairness_weight: float = 1.0,
        recon_weight: float = 0.01,
        label_weight: float = 1.0,
        lr: float = 3e-2,
        init: LFRInit = "kmeans++",
        **kwargs,
    ):
        check_choice("init", init, LFRInit)
        if prototypes < 1:
            raise ValueError(f"prototypes must be >= 1, got {prototypes}")
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.build_if_known()

    def build(self, input_dim: int, protected_classes: list[int]) -> None:
        """Prototypes ``v``, log-weights ``log α`` and prediction logits ``w`` (random start)."""
        k = self.hparams.prototypes
        self.prototypes = nn.Parameter(torch.randn(k, input_dim) * 0.5)
        self.log_alpha = nn.Parameter(torch.zeros(input_dim))  # α_d = exp(log α_d) > 0
        self.w_logit = nn.Parameter(torch.zeros(k))  # w_k = sigmoid(.) ∈ (0, 1)
        self.register_buffer("initialised", torch.tensor(self.hparams.init == "normal"))

    # --- model --------------------------------------------------------------------------------
    def distances(self, x: Tensor) -> Tensor:
        """``(B, K)`` ``Σ_d α_d (x_nd − v_kd)²``, as matrix products (no ``B×K×D`` tensor)."""
        alpha = self.log_alpha.clamp(-15.0, 15.0).exp()
        v = self.prototypes
        sq = (x * x) @ alpha[:, None] - 2.0 * x @ (v * alpha).T + ((v * v) @ alpha)[None]
        return sq.clamp_min(0.0)

    def representation(self, x: Tensor) -> Tensor:
        """``(B, K)`` soft assignment ``M`` of each row to the prototypes."""
        return torch.softmax(-self.distances(x), dim=1)

    def predict_proba(self, x: Tensor) -> Tensor:
        """``p_n = Σ_k M_nk w_k``."""
        return self.representation(x) @ torch.sigmoid(self.w_logit)

    def losses(self, x: Tensor, y: Tensor, s: Tensor) -> dict[str, Tensor]:
        """``L_z``, ``L_x``, ``L_y`` (unweighted) and the weighted ``loss`` on one batch."""
        hp = self.hparams
        m = self.representation(x)
        p = (m @ torch.sigmoid(self.w_logit)).clamp(1e-6, 1 - 1e-6)
        label = F.binary_cross_entropy(p, y.float())
        reconstruction = ((x - m @ self.prototypes) ** 2).sum(1).mean()
        parity = torch.zeros((), device=x.device)
        for a in range(s.shape[1]):
            # (groups present, K)
            means = torch.stack([m[s[:, a] == g].mean(0) for g in s[:, a].unique()])
            parity = parity + (means[:, None] - means[None]).abs().sum() / 2  # each pair once
        loss = (
            hp.fairness_weight * parity + hp.recon_weight * reconstruction + hp.label_weight * label
        )
        return {"loss": loss, "parity": parity, "reconstruction": reconstruction, "label": label}

    # --- data-dependent initialisation --------------------------------------------------------
    @torch.no_grad()
    def initialise_from(self, x: Tensor, y: Tensor) -> None:
        """Seed the prototypes on the rows ``x`` by k-means++, and ``w`` from the labels ``y``.

        ``w_k`` is the label rate of the rows softly assigned to ``v_k``. The seeding draws from
        the global torch RNG; rank 0's choice is broadcast to the other processes.
        """
        x = x.to(self.prototypes.device, self.prototypes.dtype)
        y = y.to(self.prototypes.device, self.prototypes.dtype)
        k = self.hparams.prototypes
        chosen = [int(torch.randint(len(x), (1,)))]
        nearest = ((x - x[chosen[0]]) ** 2).sum(1)
        for _ in range(1, k):
            # all zero when there are fewer distinct rows than K: draw uniformly then
            weights = nearest if nearest.sum() > 0 else torch.ones_like(nearest)
            chosen.append(int(torch.multinomial(weights, 1)))
            nearest = torch.minimum(nearest, ((x - x[chosen[-1]]) ** 2).sum(1))
        self.prototypes.copy_(x[chosen])
        m = self.representation(x)
        rate = (m * y[:, None]).sum(0) / m.sum(0).clamp_min(1e-8)
        self.w_logit.copy_(torch.logit(rate.clamp(0.01, 0.99)))
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            for p in (self.prototypes, self.w_logit):
                p.copy_(trainer.strategy.broadcast(p.detach().clone(), src=0))
        self.initialised.fill_(True)

    def setup(self, stage: str) -> None:
        """Build as the base class does; seed once from the DataModule's training rows."""
        super().setup(stage)
        train_set = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if stage == "fit" and not bool(self.initialised) and train_set is not None:
            self.initialise_from(train_set.x, train_set.y)

    def on_train_batch_start(self, batch, batch_idx):
        """Without a DataModule ``train_set``, seed on the first training batch."""
        if not bool(self.initialised):
            self.initialise_from(batch[0], batch[1])

    # --- training -----------------------------------------------------------------------------
    def configure_optimizers(self):
        """Adam on prototypes, ``α`` and ``w``."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def training_step(self, batch, batch_idx):
        """One step on the weighted loss ``A_z L_z + A_x L_x + A_y L_y``; logs each term."""
        x, y, s = batch
        out = self.losses(x, y, s)
        self.log_dict(
            {
                "train/loss": out["loss"],
                "train/parity": out["parity"],
                "train/reconstruction": out["reconstruction"],
                "train/label_loss": out["label"],
            },
            prog_bar=False,
        )
        return out["loss"]

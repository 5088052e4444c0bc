"""GRAD's training does what it claims: on data where the label leans on a proxy of the
protected attribute, the reversal layer removes the proxy's influence that Vanilla keeps."""

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from lit_rev.fair import Discrimination, GRADModule
from tests.trainers import quiet_trainer


def proxy_data(n: int, generator: torch.Generator):
    """s ~ Bernoulli(1/2); x = (s + noise: a proxy of s, an independent feature, pure noise);
    the label needs the independent feature and leans on s."""
    s = torch.randint(0, 2, (n,), generator=generator)
    proxy = s.float() + 0.3 * torch.randn(n, generator=generator)
    feature = torch.randn(n, generator=generator)
    x = torch.stack([proxy, feature, torch.randn(n, generator=generator)], 1)
    y = (feature + 1.0 * s + 0.3 * torch.randn(n, generator=generator) > 0.5).float()
    return x, y, s[:, None]


def _fit(lambda_: float, epochs: int = 6, **kwargs) -> tuple[GRADModule, Trainer]:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x, y, s = proxy_data(3000, g)
    model = GRADModule(
        input_dim=3,
        protected_classes=[2],
        protected_names=["s"],
        hidden=[16, 8],
        head_hidden=[16],
        lambda_=lambda_,
        adversary_steps=3,
        lr=3e-3,
        **kwargs,
    )
    trainer = quiet_trainer(max_epochs=epochs, num_sanity_val_steps=0)
    trainer.fit(model, DataLoader(TensorDataset(x, y, s), batch_size=100, shuffle=True))
    return model, trainer


def _discrimination(model: GRADModule) -> float:
    x, _, s = proxy_data(4000, torch.Generator().manual_seed(1))
    metric = Discrimination(2)
    model.eval()
    with torch.no_grad():
        metric.update(model.predict_proba(x), s[:, 0])
    return float(metric.compute())


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_reversal_removes_most_of_the_discrimination_vanilla_keeps(schedule):
    vanilla, _ = _fit(0.0, lr_schedule=schedule)
    grad, _ = _fit(5.0, lr_schedule=schedule)
    d_vanilla, d_grad = _discrimination(vanilla), _discrimination(grad)
    assert d_vanilla > 0.15  # the label leans on s, so an unconstrained model uses the proxy
    assert d_grad < 0.3 * d_vanilla, (d_vanilla, d_grad)


def test_cosine_schedule_anneals_the_encoder_but_not_the_heads():
    _, trainer = _fit(1.0, epochs=3, lr_schedule="cosine", adversary_lr=2e-3)
    model_opt, adversary_opt = trainer.optimizers
    assert model_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # T_max = max_epochs
    assert adversary_opt.param_groups[0]["lr"] == pytest.approx(2e-3)


def test_unknown_schedule_is_rejected():
    with pytest.raises(ValueError, match="lr_schedule"):
        GRADModule(lr_schedule="linear")


def test_cosine_schedule_needs_a_number_of_epochs():
    model = GRADModule(input_dim=3, protected_classes=[2], lr_schedule="cosine")
    trainer = quiet_trainer(max_epochs=-1, max_steps=2)
    x, y, s = proxy_data(40, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="max_epochs"):
        trainer.fit(model, DataLoader(TensorDataset(x, y, s), batch_size=20))

"""lit_rev.inference: the one eval-mode switch and the one scoring loop."""

import pytest
import torch
from torch import nn

from lit_rev.inference import evaluating, score_batches, slices


def mixed_network() -> nn.Module:
    """A network in training mode with one part kept in eval mode on purpose (frozen)."""
    network = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.BatchNorm1d(2)))
    network.train()
    network[2].eval()
    return network


def flags(module: nn.Module) -> list[bool]:
    return [m.training for m in module.modules()]


def test_evaluating_sets_eval_and_no_grad_then_restores_every_submodule():
    network = mixed_network()
    before = flags(network)
    with evaluating(network) as inside:
        assert inside is network and not any(flags(network))
        assert not torch.is_grad_enabled()
        assert not network(torch.ones(3, 2)).requires_grad
    assert flags(network) == before == [True, True, True, False, False]
    assert torch.is_grad_enabled()


def test_evaluating_restores_on_an_exception():
    network = mixed_network()
    before = flags(network)
    with pytest.raises(RuntimeError, match="boom"), evaluating(network):
        raise RuntimeError("boom")
    assert flags(network) == before and torch.is_grad_enabled()


def test_evaluating_with_grad_keeps_autograd():
    network = mixed_network()
    x = torch.ones(3, 2, requires_grad=True)
    with evaluating(network, grad=True):
        assert not network.training
        network(x).sum().backward()
    assert x.grad is not None and network.training


def test_score_batches_concatenates_columns_and_stops_at_max_batches():
    data = torch.arange(10.0)
    out = score_batches(lambda b: {"x": b, "twice": 2 * b}, slices(data, 3))
    assert torch.equal(out["x"], data) and torch.equal(out["twice"], 2 * data)
    capped = score_batches(lambda b: {"x": b}, slices(data, 3), max_batches=2)
    assert torch.equal(capped["x"], data[:6])
    assert score_batches(lambda b: {"x": b}, []) == {}

import math

import pytest
import torch

from lit_rev.fair.reversal import GradientReversal, dann_ramp, reverse_gradient


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 10.0])
def test_reversal_gradient_is_exactly_minus_lambda_times_incoming(lam):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    incoming = torch.randn(5, 3, dtype=torch.float64)
    out = reverse_gradient(x, lam)
    assert torch.equal(out, x)  # identity forward
    out.backward(incoming)
    assert torch.equal(x.grad, -lam * incoming)


def test_reversal_inside_a_network_flips_only_the_upstream_gradient():
    torch.manual_seed(0)
    encoder, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    x = torch.randn(8, 4)
    head(encoder(x)).sum().backward()
    plain_encoder, plain_head = encoder.weight.grad.clone(), head.weight.grad.clone()
    encoder.zero_grad(), head.zero_grad()
    head(GradientReversal(2.5)(encoder(x))).sum().backward()
    assert torch.allclose(encoder.weight.grad, -2.5 * plain_encoder)
    assert torch.equal(head.weight.grad, plain_head)  # the head itself still descends


def test_dann_ramp():
    assert dann_ramp(0.0) == 0.0
    assert dann_ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    layer = GradientReversal(3.0, ramp=True, gamma=10.0)
    layer.progress = 0.25
    assert layer.current_lambda == pytest.approx(3.0 * (2 / (1 + math.exp(-2.5)) - 1))
    x = torch.ones(2, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, torch.full((2,), -layer.current_lambda))

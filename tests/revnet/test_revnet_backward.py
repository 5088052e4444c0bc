"""The memory-saving backward against plain autograd.

Gradients, batch-norm statistics, random state, autocast and memory.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_rev.revnet import ReversibleBlock, ReversibleSequence, RevNet, SavedTensorMeter, build
from lit_rev.revnet.blocks import residual_function

CIFAR_BUILDERS = ["resnet32", "resnet110", "resnet164", "revnet38", "revnet110", "revnet164"]


def _input(name: str, batch: int, size: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (batch,), generator=g)
    return x, y


def _gradients(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, memory_saving: bool
) -> list[torch.Tensor]:
    """Input gradient followed by every parameter's gradient (zeros where a parameter got none)."""
    net.memory_saving = memory_saving
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    F.cross_entropy(net(x), y).backward()
    return [x.grad] + [
        p.grad if p.grad is not None else torch.zeros_like(p) for p in net.parameters()
    ]


def _angle_degrees(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    u = torch.cat([t.flatten().double() for t in a])
    v = torch.cat([t.flatten().double() for t in b])
    cos = (u @ v / (u.norm() * v.norm())).clamp(-1, 1)
    return math.degrees(math.acos(cos.item()))


@pytest.mark.parametrize(
    "name", [*CIFAR_BUILDERS, pytest.param("revnet104", marks=pytest.mark.slow)]
)
def test_float64_gradients_equal_plain_autograd(name):
    torch.manual_seed(0)
    net = build(name, num_classes=10).double()
    x, y = _input(name, 4, 32 if name == "revnet104" else 8, torch.float64)
    saving = _gradients(net, x, y, memory_saving=True)
    plain = _gradients(net, x, y, memory_saving=False)
    assert len(saving) == 1 + len(list(net.parameters()))
    for i, (a, b) in enumerate(zip(saving, plain, strict=True)):
        scale = b.norm().item()
        assert scale > 0 or i > 0, "the input gradient must not vanish"
        assert (a - b).norm().item() <= 1e-8 * scale + 1e-300, (
            f"tensor {i}: {(a - b).norm().item()} vs {scale}"
        )


FLOAT32_ANGLES: dict[str, float] = {}


@pytest.mark.parametrize("name", ["revnet38", "revnet110", "revnet164"])
def test_float32_gradient_angle_under_one_degree(name):
    torch.manual_seed(0)
    net = build(name, num_classes=10)
    x, y = _input(name, 8, 32)
    saving = _gradients(net, x, y, memory_saving=True)
    plain = _gradients(net, x, y, memory_saving=False)
    angle = _angle_degrees(saving, plain)
    FLOAT32_ANGLES[name] = angle
    print(f"{name}: float32 angle between memory-saving and plain gradients = {angle:.2e} degrees")
    assert angle < 1.0
    # Reconstruction in float32 is not exact: the two are close but not bit-identical.
    assert max((a - b).abs().max().item() for a, b in zip(saving, plain, strict=True)) > 0


def _small_revnet(**kwargs) -> RevNet:
    args = dict(units=[2, 2], channels=[8, 8, 16], num_classes=10)
    args.update(kwargs)
    return RevNet("revnet38", **args)


def test_batchnorm_buffers_equal_plain_run_after_one_step():
    torch.manual_seed(0)
    saving_net = _small_revnet(memory_saving=True)
    plain_net = copy.deepcopy(saving_net)
    plain_net.memory_saving = False
    x, y = _input("", 6, 8)
    for net in (saving_net, plain_net):
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    buffers = dict(plain_net.named_buffers())
    changed = 0
    for name, b in saving_net.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert b.item() == buffers[name].item() == 1, name
        else:
            assert torch.allclose(b, buffers[name], rtol=0, atol=1e-6), name
            changed += not torch.equal(b, torch.zeros_like(b)) and not torch.equal(
                b, torch.ones_like(b)
            )
    assert changed > 0
    for a, b in zip(saving_net.parameters(), plain_net.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_dropout_masks_are_replayed():
    torch.manual_seed(0)
    net = _small_revnet(dropout=0.5).double()
    assert net.body.preserve_rng_state
    x, y = _input("", 4, 8, torch.float64)
    torch.manual_seed(123)
    saving = _gradients(net, x, y, memory_saving=True)
    after_saving = torch.rand(3)
    torch.manual_seed(123)
    plain = _gradients(net, x, y, memory_saving=False)
    after_plain = torch.rand(3)
    torch.manual_seed(321)
    other = _gradients(net, x, y, memory_saving=False)
    for a, b in zip(saving, plain, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    assert any(not torch.allclose(a, b) for a, b in zip(other, plain, strict=True)), (
        "dropout had no effect"
    )
    assert torch.equal(after_saving, after_plain), (
        "the backward must not disturb the global random state"
    )


def test_eval_mode_and_gradient_accumulation_match_plain():
    torch.manual_seed(0)
    net = _small_revnet().double()
    x, y = _input("", 4, 8, torch.float64)
    x2, y2 = _input("", 4, 8, torch.float64, seed=1)
    for mode in (net.train, net.eval):
        mode()
        grads = {}
        for saving in (True, False):
            net.memory_saving = saving
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            F.cross_entropy(net(x2), y2).backward()  # accumulates into .grad
            grads[saving] = [p.grad.clone() for p in net.parameters()]
        for a, b in zip(grads[True], grads[False], strict=True):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-14)


def test_no_grad_runs_plainly_and_matches():
    torch.manual_seed(0)
    net = _small_revnet().eval()
    x, _ = _input("", 3, 8)
    with torch.no_grad():
        out = net(x)
    assert out.grad_fn is None
    net.memory_saving = False
    with torch.inference_mode():
        assert torch.equal(net(x), out)


def test_autocast_bfloat16_on_cpu():
    torch.manual_seed(0)
    net = _small_revnet(units=[3, 3])
    x, y = _input("", 4, 8)
    grads = {}
    for saving in (True, False):
        net.memory_saving = saving
        net.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(xr)
            assert logits.dtype == torch.bfloat16
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        grads[saving] = [xr.grad] + [p.grad for p in net.parameters()]
        assert all(
            g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
            for g in grads[saving]
        )
    # The same bf16 operations run in both modes, and the float32 stream inverts to float32
    # precision.
    assert _angle_degrees(grads[True], grads[False]) < 1.0


def test_saves_only_the_output_for_an_all_reversible_stack():
    torch.manual_seed(0)
    blocks = [ReversibleBlock(residual_function(4, 4), residual_function(4, 4)) for _ in range(5)]
    seq = ReversibleSequence(blocks, memory_saving=True)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with SavedTensorMeter(seq) as meter:
        out = seq(x)
    assert meter.bytes == out.numel() * out.element_size()
    # Nothing tensor-valued hides on the autograd node outside save_for_backward.
    hidden = [k for k, v in vars(out.grad_fn).items() if torch.is_tensor(v)]
    assert hidden == []
    seq.memory_saving = False
    with SavedTensorMeter(seq) as plain_meter:
        seq(x)
    assert plain_meter.bytes > 10 * meter.bytes


def test_activation_memory_flat_in_depth_and_far_below_resnet():
    x, _ = _input("", 4, 32)
    saved = {}
    for name in ("revnet38", "revnet110", "resnet110"):
        net = build(name)
        with SavedTensorMeter(net) as meter:
            net(x)
        saved[name] = meter.bytes
    assert saved["revnet110"] / saved["revnet38"] <= 1.10
    assert saved["revnet110"] / saved["resnet110"] <= 0.12


@pytest.mark.parametrize("dtype,bound", [(torch.float64, 1e-12), (torch.float32, 1e-3)])
def test_inverse_reconstructs_a_100_block_stack(dtype, bound):
    torch.manual_seed(0)
    blocks = [ReversibleBlock(residual_function(8, 8), residual_function(8, 8)) for _ in range(100)]
    seq = ReversibleSequence(blocks).to(dtype).train()
    x = torch.randn(4, 16, 8, 8, dtype=dtype)
    with torch.no_grad():
        ys = [x]
        for block in seq.blocks:
            ys.append(block(ys[-1]))
    # Running statistics were updated by the forward; the inverse must not touch them again.
    buffers = [b.clone() for b in seq.buffers()]
    z = ys[-1]
    errors = {}
    for k in range(1, 101):  # k blocks inverted: z should be the input of block 100 - k
        z = seq.blocks[100 - k].inverse(z)
        errors[k] = ((z - ys[100 - k]).norm() / ys[100 - k].norm()).item()
    assert all(torch.equal(a, b) for a, b in zip(buffers, seq.buffers(), strict=True))
    final = ((z - x).norm() / x.norm()).item()
    print(f"{dtype}: relative error of the reconstructed input after 100 blocks = {final:.2e}")
    assert final < bound
    assert errors[100] >= errors[1] or dtype == torch.float64

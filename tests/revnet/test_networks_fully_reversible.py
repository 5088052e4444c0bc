"""Fully reversible (i-RevNet-style) RevNets: a squeeze and injective padding, nothing stored."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_rev.revnet import ReversibleBlock, RevNet, SavedTensorMeter, build
from lit_rev.revnet.blocks import DownsampleCoupling, InjectivePad, SpaceToDepth
from lit_rev.revnet.reversible import InvertibleLayer


def test_squeeze_inverts_exactly_and_keeps_the_channel_halves():
    x = torch.randn(2, 6, 4, 8)
    squeeze = SpaceToDepth()
    y = squeeze(x)
    assert y.shape == (2, 24, 2, 4)
    assert torch.equal(squeeze.inverse(y), x)
    # each half of the output is the squeezed half of the input: a block's split is kept
    x1, x2 = x.chunk(2, dim=1)
    assert torch.equal(y, torch.cat((squeeze(x1), squeeze(x2)), dim=1))
    # the top-left pixel of a 2x2 patch is the patch's first channel
    assert torch.equal(y[:, 0], x[:, 0, ::2, ::2])
    with pytest.raises(ValueError, match=r"divisible by 2.*7x8.*fully_reversible=False"):
        squeeze(torch.randn(1, 2, 7, 8))
    assert isinstance(squeeze, InvertibleLayer)
    assert not list(squeeze.parameters())


def test_injective_pad_pads_each_half_and_inverts_exactly():
    x = torch.randn(3, 4, 5, 5)
    pad = InjectivePad(4, 10)
    y = pad(x)
    assert y.shape == (3, 10, 5, 5)
    assert torch.equal(y[:, :2], x[:, :2])
    assert torch.equal(y[:, 5:7], x[:, 2:])
    assert not y[:, 2:5].any()
    assert not y[:, 7:].any()
    assert torch.equal(pad.inverse(y), x)
    assert isinstance(pad, InvertibleLayer)
    with pytest.raises(ValueError, match="in_channels=6, out_channels=4"):
        InjectivePad(6, 4)


def test_fully_reversible_revnet38_has_no_stored_unit_and_the_presets_parameters():
    plain, full = build("revnet38"), RevNet("revnet38", fully_reversible=True)
    blocks = list(full.body.blocks)
    assert not any(isinstance(b, DownsampleCoupling) for b in blocks)
    assert all(isinstance(b, (ReversibleBlock, InvertibleLayer)) for b in blocks)
    assert [type(b) for b in blocks].count(SpaceToDepth) == 2
    assert [type(b) for b in blocks].count(ReversibleBlock) == 9  # the same 9 units
    # a bijection keeps the values per image: 32x32x32 = 128x16x16 = 512x8x8
    assert full.out_channels == 512
    assert full(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    print(
        f"parameters: RevNet-38 {plain.num_parameters()}, fully reversible {full.num_parameters()}"
    )
    assert abs(full.num_parameters() / plain.num_parameters() - 1) < 0.02
    # revnet164's first unit widens 32 -> 128 at full resolution: an injective padding
    wide = RevNet("revnet164", fully_reversible=True, units=[1, 1, 1])
    assert [type(b).__name__ for b in wide.body.blocks] == [
        "InjectivePad",
        "ReversibleBlock",
        "SpaceToDepth",
        "ReversibleBlock",
        "SpaceToDepth",
        "ReversibleBlock",
    ]
    assert wide.out_channels == 2048


def _loss(logits):
    return F.cross_entropy(logits, torch.arange(len(logits)) % 10)


def _saved_bytes(net, x) -> int:
    with SavedTensorMeter(net) as meter:
        loss = _loss(net(x))
    loss.backward()
    return meter.bytes


def _stem_and_head_bytes(net, x) -> int:
    """What plain autograd saves for the stem, the head and the loss, around a stand-in body."""
    with SavedTensorMeter(net) as meter:
        net.stem(x)
        z = torch.randn(x.shape[0], net.out_channels, *_final_size(net, x), requires_grad=True)
        _loss(net.head(z))
    return meter.bytes


def _final_size(net, x):
    with torch.no_grad():
        return net.body(net.stem(x)).shape[-2:]


# (units, channels): 1 to 5 units per stage and 2 to 4 stages; 32x32 inputs squeeze to 4x4.
SHAPES = [
    ([1, 1, 1], [8, 8, 16, 32]),
    ([3, 3, 3], [8, 8, 16, 32]),
    ([5, 5, 5], [8, 8, 16, 32]),
    ([2, 2], [8, 8, 16]),
    ([2, 2, 2, 2], [8, 8, 16, 32, 64]),
]


def test_saved_bytes_are_the_stem_and_head_only_whatever_the_depth_and_stages():
    """Memory-saving backward of a fully reversible RevNet stores nothing of its body.

    Exactly: the bytes saved equal those plain autograd saves for the stem, the head and the
    loss alone (the body's output, which the sequence keeps, is the head's input, already
    counted). So for one number of stages they are equal at every depth. Across stage counts
    the stream has the same N x C x H x W values, and the only difference is the head's
    per-channel tensors, as the final width C is 4x larger per extra stage: batch norm's
    running mean and variance and batch mean and inverse std (4 x C) and the N x C pooled
    features its linear layer keeps, i.e. 4 bytes x (N + 4) x C: under 5% here (32x32 inputs,
    4x4 at the end of 4 stages), and 1/(H x W) of the stream in general.
    """
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    saved, widths = {}, {}
    for units, channels in SHAPES:
        net = RevNet("revnet38", units=units, channels=channels, fully_reversible=True)
        key = (len(units), units[0])
        saved[key], widths[key] = _saved_bytes(net, x), net.out_channels
        assert saved[key] == _stem_and_head_bytes(net, x), key
        # the same shape with stored strided units keeps their inputs besides stem and head
        stored = RevNet("revnet38", units=units, channels=channels)
        assert _saved_bytes(stored, x) > _stem_and_head_bytes(stored, x)
    print("saved bytes (stages, units per stage):", saved)
    assert saved[(3, 1)] == saved[(3, 3)] == saved[(3, 5)]
    for key, value in saved.items():
        per_channel = 4 * (x.shape[0] + 4) * (widths[key] - widths[(3, 1)])
        assert value - saved[(3, 1)] == per_channel, key
        assert abs(per_channel) < 0.05 * saved[(3, 1)]


@pytest.mark.parametrize(
    ("preset", "units", "channels", "dropout"),
    [
        ("revnet38", [2, 1, 1], [8, 8, 16, 32], 0.0),
        ("revnet164", [1, 1, 1], [8, 8, 16, 32], 0.0),  # bottlenecks and an injective pad
        ("revnet38", [1, 2], [8, 8, 16], 0.2),  # dropout: random state replayed
    ],
)
def test_float64_gradients_equal_plain_autograd(preset, units, channels, dropout):
    torch.manual_seed(0)
    net = RevNet(
        preset,
        units=units,
        channels=channels,
        dropout=dropout,
        fully_reversible=True,
    ).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 4, 9])
    grads = {}
    for saving in (True, False):
        net.memory_saving = saving
        net.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        torch.manual_seed(1)
        F.cross_entropy(net(xg), y).backward()
        grads[saving] = [xg.grad] + [p.grad for p in net.parameters()]
    for a, b in zip(grads[True], grads[False], strict=True):
        assert (a - b).norm() <= 1e-10 * b.norm()


def test_the_inverse_rebuilds_the_body_input():
    torch.manual_seed(0)
    net = RevNet("revnet164", units=[2, 2, 2], channels=[8, 8, 16, 32], fully_reversible=True)
    net = net.double().train()
    with torch.no_grad():
        z = net.stem(torch.randn(4, 3, 16, 16, dtype=torch.float64))
        rebuilt = net.inverse_body(net.body(z))
    assert (rebuilt - z).norm() <= 1e-12 * z.norm()
    with pytest.raises(ValueError, match="fully_reversible=True"):
        build("revnet38").inverse_body(z)

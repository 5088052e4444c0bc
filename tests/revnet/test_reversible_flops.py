"""FlopCounterMode and Lightning's model summary around the memory-saving backward.

``torch.utils.flop_counter.FlopCounterMode`` used to fail inside the memory-saving forward
("Expected gradient function to be set", from its module tracker). It now runs, and counts the
plain network's FLOPs: the backward's recomputation is left out of the count.
"""

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.flop_counter import FlopCounterMode

from lit_rev.revnet import ImageClassifier, ReversibleViT, RevNet, build


def _step_flops(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, dict]:
    """Total FLOPs of one forward and backward, and the per-module totals."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    return counter.get_total_flops(), per_module


@pytest.mark.parametrize(
    "make",
    [
        lambda: build("revnet38", num_classes=10),
        lambda: ReversibleViT(image_size=8, patch_size=2, width=16, depth=3, dropout=0.1),
    ],
    ids=["revnet38", "reversible_vit"],
)
def test_flop_counter_counts_the_plain_networks_flops(make):
    torch.manual_seed(0)
    net = make()
    size = 32 if isinstance(net, RevNet) else 8
    x = torch.randn(2, net.embed.in_channels if hasattr(net, "embed") else 3, size, size)
    y = torch.tensor([1, 2])
    net.memory_saving = False
    plain, plain_modules = _step_flops(net, x, y)
    net.memory_saving = True
    saving, saving_modules = _step_flops(net, x, y)
    print(f"{type(net).__name__}: {plain} FLOPs plain, {saving} memory-saving (forward+backward)")
    assert plain > 0
    assert saving == plain
    # Per module too, down to the sequence; inside it the backward's FLOPs go to the sequence.
    inside = f"{type(net).__name__}.body."
    outside = {k: v for k, v in plain_modules.items() if not k.startswith(inside)}
    assert {k: saving_modules[k] for k in outside} == outside
    assert f"{type(net).__name__}.body" in outside
    # The counter's modes are gone afterwards, and the network still trains plainly.
    F.cross_entropy(net(x), y).backward()


def test_lightning_model_summary_counts_flops_of_a_memory_saving_revnet():
    torch.manual_seed(0)
    totals = {}
    for saving in (True, False):
        backbone = RevNet(units=[2, 2], channels=[8, 8, 16], in_channels=1, memory_saving=saving)
        model = ImageClassifier(backbone, mean=[0.5], std=[0.25])
        model.example_input_array = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
        summary = ModelSummary(model, max_depth=-1)
        totals[saving] = summary.total_flops
        assert "ReversibleSequence" in str(summary)
    assert totals[True] == totals[False] > 0

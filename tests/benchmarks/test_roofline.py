"""benchmarks/roofline.py at tiny sizes: peaks, FLOP counts and the table, in seconds."""

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "roofline.py"


def _load():
    spec = importlib.util.spec_from_file_location("roofline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_step_flops_are_those_of_the_convolutions_and_matmuls_forward_and_backward():
    """One conv layer and one linear layer, counted by hand: forward 2*MACs each, backward twice
    that (input and weight gradients; the input's gradient of the first layer is not needed)."""
    roofline = _load()
    conv, linear = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Linear(3 * 4 * 4, 5)
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), linear)
    x = torch.randn(6, 2, 4, 4)
    conv_macs = 6 * 3 * 2 * 9 * 4 * 4
    linear_macs = 6 * 48 * 5
    expected = 2 * conv_macs * 2 + 2 * linear_macs * 3  # conv: forward + weight grad
    assert roofline.count_step_flops(model, lambda: model(x).sum()) == expected


def test_memory_saving_network_is_counted_as_the_plain_one_and_left_memory_saving():
    roofline = _load()
    from lit_rev.revnet.networks import revnet38

    torch.manual_seed(0)
    saving = revnet38(memory_saving=True)
    x = torch.randn(2, 3, 32, 32)
    flops_saving = roofline.count_step_flops(saving, lambda: saving(x).sum())
    saving.memory_saving = False
    assert roofline.count_step_flops(saving, lambda: saving(x).sum()) == flops_saving > 0
    saving.memory_saving = True
    roofline.count_step_flops(saving, lambda: saving(x).sum())
    assert saving.memory_saving is True


TINY_ARGS = ["--tiny", "--matmul-size", "64", "--conv-shape", "1", "8", "8", "--repeats", "1"]
TINY_ARGS += ["--peak-threads", "1", "--model-threads", "1"]


def test_tiny_run_prints_peaks_and_a_fraction_for_every_model(capsys):
    roofline = _load()
    result = roofline.main(TINY_ARGS)
    out = capsys.readouterr().out
    assert set(result["peaks"][1]) == {"matmul", "conv3x3"}
    assert all(v > 0 for v in result["peaks"][1].values())
    names = [row["model"] for row in result["models"]]
    assert names == ["Glow tiny", "PixelCNN++ tiny", "RevNet-38 plain", "RevNet-38 memory-saving"]
    for row in result["models"]:
        assert row["GFLOP/s"] == row["GFLOP/step"] / row["s/step"]
        assert row["of conv peak"] == row["GFLOP/s"] / row["conv peak alongside"]
    # the two RevNets run the same arithmetic: the same FLOPs counted
    assert result["models"][2]["GFLOP/step"] == result["models"][3]["GFLOP/step"]
    assert "of conv peak" in out and "threads" in out

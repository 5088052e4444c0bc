import os
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# lit_rev leaves matplotlib's backend to its user; the tests, and the processes they start
# (which inherit the environment), draw off screen whatever display the machine has.
os.environ["MPLBACKEND"] = "Agg"
matplotlib.use("Agg")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """One torch thread unless ``LIT_REV_TEST_THREADS`` says otherwise: small nets on few cores
    run erratically (and many times slower) with more."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("LIT_REV_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fake_vision_root(tmp_path_factory):
    """A directory holding tiny MNIST/FashionMNIST/CIFAR/SVHN/CelebA files in their real formats."""
    from tests import fakedata

    return fakedata.write_all(tmp_path_factory.mktemp("vision"))


@pytest.fixture
def fake_vision(fake_vision_root, monkeypatch):
    """``LIT_REV_DATA`` points at the fake sets and torchvision's MD5 tables accept them."""
    from tests import fakedata

    fakedata.patch_md5(monkeypatch, fake_vision_root)
    monkeypatch.setenv("LIT_REV_DATA", str(fake_vision_root))
    return fake_vision_root


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """LightningCLI warns when given args while sys.argv holds pytest's own arguments."""
    monkeypatch.setattr(sys, "argv", ["lit_rev"])

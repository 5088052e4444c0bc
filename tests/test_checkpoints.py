"""Checkpoint reading in one place: weights only, clear errors, and a shared module."""

import ast
import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lit_rev.checkpoints import read_state_dict, state_dict_mismatch
from tests.test_imports import PACKAGE, SLICES, violations


class _RunsCode:
    """Unpickling this calls ``os.system``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_lightning_checkpoint_and_a_bare_state_dict_read_the_same(tmp_path):
    state = nn.Linear(3, 2).state_dict()
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "lightning.ckpt")
    torch.save(state, tmp_path / "bare.pt")
    for name in ("lightning.ckpt", "bare.pt"):
        read = read_state_dict(tmp_path / name, "test")
        assert read.keys() == state.keys()
        assert all(torch.equal(read[k], state[k]) for k in state)


def test_a_crafted_checkpoint_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": _RunsCode(marker)}, f)
    with pytest.raises(ValueError, match=r"caller: .*evil.ckpt is not loaded.*weights_only=True"):
        read_state_dict(tmp_path / "evil.ckpt", "caller")
    assert not marker.exists()


def test_missing_and_malformed_checkpoints_name_the_caller_and_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"caller: no checkpoint at .*absent.ckpt"):
        read_state_dict(tmp_path / "absent.ckpt", "caller")
    torch.save({"weights": [1, 2]}, tmp_path / "odd.ckpt")
    with pytest.raises(ValueError, match=r"caller: .*odd.ckpt has no 'state_dict' of tensors"):
        read_state_dict(tmp_path / "odd.ckpt", "caller")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"caller: "):
        read_state_dict(tmp_path / "text.ckpt", "caller")


def test_the_mismatch_lists_missing_unexpected_and_reshaped_keys():
    target = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    state = nn.Sequential(nn.Linear(3, 4)).state_dict()
    state["extra"] = torch.zeros(1)
    message = state_dict_mismatch(target, state)
    assert "2 missing in the checkpoint: 1.weight, 1.bias" in message
    assert "0.weight: checkpoint (4, 3) vs model (2, 3)" in message
    assert "1 unexpected in the checkpoint: extra" in message
    assert state_dict_mismatch(target, target.state_dict()) == ""


def test_every_torch_load_in_the_package_reads_weights_only():
    unsafe = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            if isinstance(func, ast.Attribute) and func.attr == "load":
                if getattr(func.value, "id", None) != "torch":
                    continue
                safe = any(
                    k.arg == "weights_only" and getattr(k.value, "value", None) is True
                    for k in node.keywords
                )
                if not safe:
                    unsafe.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert unsafe == [], f"torch.load without weights_only=True at {unsafe}"


@pytest.mark.parametrize("module", ["checkpoints.py", "lazy.py"])
def test_the_shared_modules_import_no_slice(module):
    assert violations(PACKAGE / module, tuple(f"lit_rev.{s}" for s in SLICES)) == []

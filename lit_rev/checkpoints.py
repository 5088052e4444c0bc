"""Reading model weights from checkpoint files, shared by every slice and command.

A checkpoint is read with ``torch.load(weights_only=True)`` only: tensors and plain containers,
so a crafted file cannot run code when it is loaded. This module imports no slice.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict) at ``path``.

    Read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
    crafted checkpoint cannot run code when it is loaded (a full unpickle would run any
    ``__reduce__`` it holds). ``what`` names the caller in errors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message names what it refused, e.g. "Unsupported global: GLOBAL os.system ..."
        refused = re.search(r"WeightsUnpickler error:\s*([^.\n]+)", str(error))
        reason = refused.group(1).strip() if refused else str(error).strip()[:200]
        raise ValueError(
            f"{what}: {path} is not loaded: torch.load(weights_only=True) refused it ({reason}). "
            "It holds something other than tensors and plain containers (which could run code when "
            "unpickled), or is not a torch checkpoint. Load only checkpoints you wrote with this "
            "code; re-save a trusted one as {'state_dict': model.state_dict()}"
        ) from None
    except (RuntimeError, EOFError) as error:  # truncated or not a torch file
        raise ValueError(f"{what}: cannot read {path} as a torch checkpoint ({error})") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        seen = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint)
        raise ValueError(f"{what}: {path} has no 'state_dict' of tensors (found {seen})")
    return state


def state_dict_mismatch(target: nn.Module, state: dict[str, torch.Tensor], limit: int = 10) -> str:
    """What keeps ``target.load_state_dict(state, strict=True)`` from working, or ``""``.

    Missing and unexpected keys and shape mismatches, at most ``limit`` of each.
    """
    own = target.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    labelled = (
        ("missing in the checkpoint", missing),
        ("different shapes", shapes),
        ("unexpected in the checkpoint", unexpected),
    )
    for label, items in labelled:
        if items:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)

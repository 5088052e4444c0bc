"""One quiet CPU Trainer for the tests: no logger, checkpoints, progress bar or summary."""

from lightning.pytorch import Trainer

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def quiet_trainer(tmp_path=None, **overrides) -> Trainer:
    """A Trainer writing only under ``tmp_path``; ``overrides`` replace any default."""
    return Trainer(**{**QUIET, "default_root_dir": tmp_path, **overrides})

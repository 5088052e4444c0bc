"""Callbacks the CLI tests load by class path (the tests directory is put on PYTHONPATH)."""

import os

import torch
from lightning.pytorch import Callback


class DumpParameters(Callback):
    """Saves every rank's state dict to ``$DUMP_DIR/rank<r>.pt`` when training ends."""

    def on_train_end(self, trainer, pl_module):
        path = os.path.join(os.environ["DUMP_DIR"], f"rank{trainer.global_rank}.pt")
        torch.save({k: v.detach().cpu() for k, v in pl_module.state_dict().items()}, path)

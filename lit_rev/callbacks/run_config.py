"""The run's ``config.yaml``, saved without overwriting another run's: :class:`RunConfigSaver`."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_rev.callbacks.run_files import free_path, run_dir


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's config as ``config.yaml`` in the run's directory, never over another run's.

    The run's directory is the logger's version directory (overwritten there, as Lightning
    does). With no logger (``--trainer.logger=false``)
    Lightning would write ``config.yaml`` into ``trainer.default_root_dir`` (the working
    directory), over whatever is there; here it takes the first free name instead
    (``config_1.yaml`` ...) and says so.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Save the config once, where the class docstring says."""
        if self.already_saved:
            return
        if run_dir(trainer) is not None:
            super().setup(trainer, pl_module, stage)
            return
        path = trainer.strategy.broadcast(free_path(trainer.default_root_dir, self.config_filename))
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, str(path), skip_none=False, overwrite=False, multifile=self.multifile
            )
            rank_zero_info(f"no logger: the run's config is saved to {path}")
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

"""Terminal output without misleading or empty lines: progress bar, model summary, log filters."""

from __future__ import annotations

import logging
import warnings

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar


class StepBoundProgressBar(RichProgressBar):
    """Rich progress bar whose epoch label shows the bound the run stops at.

    It reads ``Epoch 4/9`` when the run is bounded by ``max_epochs`` and
    ``Epoch 4 (max_steps 800)`` when it is bounded by steps only (Lightning prints
    ``Epoch 4/-2`` there: ``max_epochs - 1`` with ``max_epochs=-1``).
    """

    def train_description(self, current_epoch: int) -> str:
        """The epoch label: ``Epoch 4/9`` or ``Epoch 4 (max_steps 800)``."""
        trainer = self.trainer
        description = f"Epoch {current_epoch}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            description += f"/{trainer.max_epochs - 1}"
        elif trainer.max_steps is not None and trainer.max_steps > 0:
            description += f" (max_steps {trainer.max_steps})"
        if len(self.validation_description) > len(description):
            # padded: no flicker against the "Validation" label
            description = f"{description:{len(self.validation_description)}}"
        return description

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's epoch start, then the epoch's bar relabelled by :meth:`train_description`."""
        super().on_train_epoch_start(trainer, pl_module)
        if self.progress is not None and self.train_progress_bar_id is not None:
            label = self.train_description(trainer.current_epoch)
            self.progress.update(self.train_progress_bar_id, description=label)
            self.refresh()


class SummaryWithoutUnmeasuredFlops(RichModelSummary):
    """Rich model summary that drops the ``FLOPs`` column and total when nothing was measured.

    Lightning counts FLOPs only by running ``example_input_array`` through the model; without
    one every entry is 0, which reads as a measurement. With one, the summary is Lightning's.
    """

    @staticmethod
    def summarize(
        summary_data,
        total_parameters,
        trainable_parameters,
        model_size,
        total_training_modes,
        total_flops,
        **summarize_kwargs,
    ) -> None:
        """Print Lightning's rich summary, without the FLOPs where none were measured."""
        if total_flops:
            return RichModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        kept = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in kept:
            left = name in (" ", "Name", "Type", "Mode")
            table.add_column(
                name, style="dim" if name == " " else None, justify="left" if left else "right"
            )
        for row in zip(*(values for _, values in kept), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        grid = Table.grid(expand=True)
        grid.add_column()
        frozen = int(total_parameters - trainable_parameters)
        for label, value in (
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            ("Non-trainable params", get_human_readable_count(frozen)),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
        ):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


# Advertisements Lightning logs at INFO on every Trainer (lightning 2.6:
# trainer/connectors/logger_connector/logger_connector.py and callback_connector.py).
_ADVERTS = _DropMessages(("💡 Tip: For seamless cloud",))


def quiet_third_party_noise() -> None:
    """Silence lines that open every run and carry nothing for the user; no other message.

    - Lightning's advertisements for ``litlogger``/``litmodels`` (INFO records starting
      "💡 Tip: For seamless cloud"), dropped by a filter on the loggers that emit them;
    - torch's FutureWarning that ``LeafSpec`` is deprecated, raised by Lightning's own
      ``utilities/_pytree.py`` (matched by its exact message).
    """
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _ADVERTS not in logger.filters:
            logger.addFilter(_ADVERTS)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )

"""``predict`` writes one CSV row per image: :class:`PredictionWriter`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import Subset

from lit_rev.callbacks.run_files import output_path


def per_image_columns(prediction: Any, module: LightningModule) -> dict[str, list]:
    """Columns of one ``predict_step`` output, one value per image each.

    ``(N,)`` tensors are kept as they are, ``(N, K)`` tensors become columns ``key_0`` ...
    ``key_{K-1}``; a bare tensor is called ``prediction``. Anything else, or columns of
    different lengths, raises with the module's name.
    """
    if isinstance(prediction, torch.Tensor):
        prediction = {"prediction": prediction}
    if not isinstance(prediction, dict) or not prediction:
        raise TypeError(
            f"{type(module).__name__}.predict_step returned {type(prediction).__name__}; the "
            "prediction writer needs a dict of per-image tensors (first dimension = batch size)"
        )
    columns: dict[str, list] = {}
    sizes = set()
    for key, value in prediction.items():
        value = torch.as_tensor(value).detach().cpu()
        if value.dim() == 1:
            columns[key] = value.tolist()
        elif value.dim() == 2:
            columns.update({f"{key}_{k}": value[:, k].tolist() for k in range(value.shape[1])})
        else:
            raise ValueError(
                f"{type(module).__name__}.predict_step: {key!r} has shape {tuple(value.shape)}; "
                "the prediction writer takes (N,) or (N, K) per-image tensors"
            )
        sizes.add(value.shape[0])
    if len(sizes) != 1:
        raise ValueError(
            f"{type(module).__name__}.predict_step: columns of different lengths "
            f"{sorted(sizes)} in one batch ({list(prediction)})"
        )
    return columns


#: The columns every row starts with.
FIXED = ("set", "position", "dataset_index")


def dataset_index(dataset: Any, position: int) -> int:
    """The index in the underlying dataset of item ``position`` of ``dataset``.

    Follows every ``torch.utils.data.Subset`` (the seeded subsets of capped sets) down to the
    dataset that holds the images; for any other dataset it is ``position`` itself.
    """
    index = position
    while isinstance(dataset, Subset):
        index = int(dataset.indices[index])
        dataset = dataset.dataset
    return index


def _dataset_of(trainer: Trainer, dataloader_idx: int) -> Any:
    loaders = trainer.predict_dataloaders
    if loaders is None:
        return None
    loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
    if dataloader_idx >= len(loaders):
        return None
    return getattr(loaders[dataloader_idx], "dataset", None)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs to ``predictions.csv`` in the run's directory.

    One row per image: ``set`` (the DataModule's ``test_names`` where it has them, else the
    dataloader index), ``position`` (the image's position in the set as scored: in the capped,
    seeded subset where the DataModule draws one), ``dataset_index`` (its index in the
    underlying dataset, through every ``Subset``) and every per-image column
    of the module's ``predict_step`` (see :func:`per_image_columns`). Prints the path at the
    end. With several processes, process ``r > 0`` writes ``predictions_rank{r}.csv``.
    """

    def __init__(self, filename: str = "predictions.csv"):
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Path | None = None
        self.rows = 0
        self._file = None
        self._writer: csv.DictWriter | None = None
        self._seen: dict[int, int] = {}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Choose this run's file (a process ``r > 0`` gets its own); nothing is written yet."""
        name = self.filename
        if trainer.global_rank > 0:
            name = f"{Path(name).stem}_rank{trainer.global_rank}{Path(name).suffix}"
        self.path = output_path(trainer, name)
        self.rows = 0
        self._seen = {}
        self._file = None
        self._writer = None

    @staticmethod
    def _set_name(trainer: Trainer, dataloader_idx: int) -> str:
        names = getattr(trainer.datamodule, "test_names", None)
        if names and dataloader_idx < len(names):
            return str(names[dataloader_idx])
        return str(dataloader_idx)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        """Append one row per image of the batch (the first batch opens the file)."""
        if prediction is None:
            return
        columns = per_image_columns(prediction, pl_module)
        n = len(next(iter(columns.values())))
        if batch_indices is None or len(batch_indices) != n:  # e.g. an iterable dataset: count
            start = self._seen.get(dataloader_idx, 0)
            batch_indices = range(start, start + n)
        self._seen[dataloader_idx] = self._seen.get(dataloader_idx, 0) + n
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Open across batches (each hook writes its rows) and closed in _close, so no `with`.
            self._file = open(self.path, "w", newline="")  # noqa: SIM115
            self._writer = csv.DictWriter(self._file, fieldnames=[*FIXED, *columns])
            self._writer.writeheader()
        elif set(columns) != set(self._writer.fieldnames[len(FIXED) :]):
            raise ValueError(
                f"{type(pl_module).__name__}.predict_step changed its columns between batches: "
                f"{self._writer.fieldnames[len(FIXED) :]} then {list(columns)}"
            )
        set_name = self._set_name(trainer, dataloader_idx)
        dataset = _dataset_of(trainer, dataloader_idx)
        for i, position in enumerate(batch_indices):
            row = {k: v[i] for k, v in columns.items()}
            index = dataset_index(dataset, int(position))
            self._writer.writerow(
                {"set": set_name, "position": int(position), "dataset_index": index, **row}
            )
        self.rows += n

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the file and print where the rows went."""
        self._close()
        if self.rows:
            print(f"predictions: {self.rows} rows written to {self.path}", flush=True)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Close the file: the rows written so far stay readable."""
        self._close()

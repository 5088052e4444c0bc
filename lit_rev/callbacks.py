"""Callbacks every ``python -m lit_rev`` run gets by default.

``lit_rev.config.ConfigBuilder`` adds them to every Trainer it builds.

- :class:`LastCheckpoint`: Lightning's ``ModelCheckpoint(save_last=True)`` (epoch ends), plus
  ``last.ckpt`` every ``every_n_steps`` optimiser steps, so a run killed mid-epoch loses at
  most that many steps.
- :class:`FaultCheckpoint`: a run stopped by a signal (SIGTERM from SLURM or ``docker stop``,
  Ctrl+C) or by an exception first writes ``checkpoints/on_exception.ckpt`` and says how to
  resume from it.
- :class:`PredictionWriter`: ``predict`` writes one CSV row per image (set, index and every
  per-image column of the module's ``predict_step``) into the run's directory.
- :class:`RunConfigSaver`: saves the run's ``config.yaml`` in the run's directory; with no
  logger, under a name that does not exist yet (never over a file of another run).
- :class:`StepBoundProgressBar`, :class:`SummaryWithoutUnmeasuredFlops` and
  :func:`quiet_third_party_noise`: terminal output without misleading or empty lines.

One more is opt-in (listed in a YAML's ``trainer.callbacks``): :class:`CompileNetwork`, which
runs the module's network through ``torch.compile``.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    ModelCheckpoint,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import nn

# What a shell reports for a process ended by SIGTERM; Lightning's SIGTERMException is a
# SystemExit with no code, which exits 0 and tells a scheduler that the job finished.
SIGTERM_EXIT_CODE = 128 + int(signal.SIGTERM)


@contextlib.contextmanager
def sigterm_exits_nonzero() -> Iterator[None]:
    """Turn Lightning's SIGTERM stop (``SystemExit`` with code ``None``: exit 0) into exit 143."""
    try:
        yield
    except SIGTERMException as stop:
        if not stop.code:
            raise SystemExit(SIGTERM_EXIT_CODE) from stop
        raise


def run_dir(trainer: Trainer) -> Path | None:
    """The run's own directory (the logger's version directory), or ``None`` without one."""
    logger = trainer.logger
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    return Path(log_dir) if log_dir else None


def free_path(directory: str | Path, name: str) -> Path:
    """``directory/name``, else ``stem_1.ext``, ``stem_2.ext``, ...: the first free name."""
    directory, stem, suffix = Path(directory), Path(name).stem, Path(name).suffix
    path, n = directory / name, 0
    while path.exists():
        n += 1
        path = directory / f"{stem}_{n}{suffix}"
    return path


def output_path(trainer: Trainer, name: str) -> Path:
    """Where a run writes ``name``: its own directory, else a free name in the root directory.

    Overwriting in the run's own directory is fine; ``trainer.default_root_dir`` is shared
    (the working directory, say), so there the first free name is taken.
    """
    own = run_dir(trainer)
    if own is not None:
        return own / name
    return free_path(trainer.default_root_dir, name)


# --- checkpoints ----------------------------------------------------------------------------
class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also rewrites ``last.ckpt`` every ``every_n_steps`` optimiser steps.

    At epoch ends it writes ``last.ckpt`` and the latest epoch's file, exactly as Lightning's
    default. Lightning cannot combine step and epoch triggers in one ``ModelCheckpoint``; here
    the epoch triggers are Lightning's and the step saves write only ``last.ckpt``.
    ``every_n_steps=0`` saves at epoch ends only.
    """

    def __init__(self, every_n_steps: int = 500, **kwargs: Any):
        if every_n_steps < 0:
            raise ValueError(
                f"every_n_steps must be >= 0 (0: epoch ends only), got {every_n_steps}"
            )
        kwargs.setdefault("save_last", True)
        super().__init__(**kwargs)
        self.every_n_steps = every_n_steps
        self._step_saved = 0

    @property
    def state_key(self) -> str:
        """The key a plain ``ModelCheckpoint`` has: checkpoints resume across either callback."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count steps from the start step (a resumed run's is its checkpoint's)."""
        super().on_train_start(trainer, pl_module)
        self._step_saved = trainer.global_step  # a resumed run counts from its checkpoint

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        """Lightning's checks, then ``last.ckpt`` when ``every_n_steps`` steps have passed."""
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        step = trainer.global_step
        # ">=" rather than "%": with several optimisers per batch the step can jump past N.
        if not self.every_n_steps or step < self._step_saved + self.every_n_steps:
            return
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        epoch_bookkeeping = self._last_global_step_saved
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        # Leave Lightning's epoch-end logic as it would be without this save, so the epoch
        # file is still written when an epoch ends on a step save.
        self._last_global_step_saved = epoch_bookkeeping
        self._step_saved = step


class FaultCheckpoint(Callback):
    """Saves the full training state when an exception or a signal stops ``fit``.

    After at least one step, the state (weights, optimiser, schedulers, loop counters) goes to
    ``<checkpoint dir>/on_exception.ckpt``, and the ``--ckpt_path`` that resumes it is printed.

    The directory is the ``ModelCheckpoint``'s (the run's ``checkpoints/``), resolved when the
    fault happens; without a logger a free name is used so another run's file is never
    overwritten. ``last.ckpt`` is left as it was: an exception may leave the weights broken
    (non-finite), so the last regular save stays available next to the fault's state.

    It does what Lightning's ``OnExceptionCheckpoint`` does, from the same ``on_exception``
    hook, without two of its side effects: any ``OnExceptionCheckpoint`` makes every
    ``fit`` without ``--ckpt_path`` silently resume from the newest ``last.ckpt`` or fault
    checkpoint it can find, and it deletes its file after a run that ends well.

    Lightning stops on SIGTERM at the next batch boundary (its ``SIGTERMException``); Ctrl+C
    stops at once, so its state may be mid-step (one optimiser step at most is affected).
    With several processes, only SIGTERM and Ctrl+C (which every process receives) are
    saved: an exception of one process would leave the others waiting at the save's barrier.
    A save that fails is reported and never hides the original exception.
    """

    def __init__(self, filename: str = "on_exception.ckpt"):
        self.filename = filename
        self.saved_path: Path | None = None

    def _resolve_path(self, trainer: Trainer) -> Path:
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None)
        own = run_dir(trainer)
        if directory is None:
            directory = (own if own is not None else Path(trainer.default_root_dir)) / "checkpoints"
        if own is None:
            return free_path(directory, self.filename)
        return Path(directory) / self.filename

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Save the state and print how to resume (``fit`` only, after at least one step)."""
        if trainer.state.fn != TrainerFn.FITTING or trainer.fast_dev_run:
            return
        if trainer.global_step == 0:  # nothing trained yet, nothing to lose
            return
        signalled = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if trainer.world_size > 1 and not signalled:
            rank_zero_warn(
                f"{type(exception).__name__} in a {trainer.world_size}-process run: no fault "
                "checkpoint (saving would wait on the other processes); resume from last.ckpt"
            )
            return
        what = "SIGTERM" if isinstance(exception, SIGTERMException) else type(exception).__name__
        try:
            path = trainer.strategy.broadcast(self._resolve_path(trainer))
            trainer.save_checkpoint(path, weights_only=False)
        except Exception as error:
            print(
                f"{what} at step {trainer.global_step}: could not save a fault checkpoint "
                f"({type(error).__name__}: {error})",
                file=sys.stderr,
                flush=True,
            )
            return
        self.saved_path = path
        if trainer.is_global_zero:
            print(
                f"{what} at step {trainer.global_step}: training state saved to {path}\n"
                f"  resume with: --ckpt_path {path}",
                file=sys.stderr,
                flush=True,
            )


# --- predict --------------------------------------------------------------------------------
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


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs to ``predictions.csv`` in the run's directory.

    One row per image: ``set`` (the DataModule's ``test_names`` where it has them, else the
    dataloader index), ``index`` (position in that set's dataset) and every per-image column
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
            self._writer = csv.DictWriter(self._file, fieldnames=["set", "index", *columns])
            self._writer.writeheader()
        elif set(columns) != set(self._writer.fieldnames[2:]):
            raise ValueError(
                f"{type(pl_module).__name__}.predict_step changed its columns between batches: "
                f"{self._writer.fieldnames[2:]} then {list(columns)}"
            )
        set_name = self._set_name(trainer, dataloader_idx)
        for i, index in enumerate(batch_indices):
            row = {k: v[i] for k, v in columns.items()}
            self._writer.writerow({"set": set_name, "index": int(index), **row})
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


# --- config ---------------------------------------------------------------------------------
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


# --- torch.compile ------------------------------------------------------------------------
#: The attributes holding the network, per LightningModule class (by class name, so that this
#: module imports none of the slices). Attributes a module does not have (GRADModule's
#: ``readout`` in ``pred`` mode) are skipped.
NETWORK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "DensityModule": ("network",),
    "ImageClassifier": ("backbone",),
    "GRADModule": ("encoder", "target", "readout", "heads"),
}

#: Methods compiled besides ``forward`` where a network has them: the density networks are
#: trained and scored through ``log_prob_parts``/``log_prob``, GRAD's heads through ``losses``.
COMPILED_METHODS = ("log_prob_parts", "log_prob", "losses")


def network_attributes(module: LightningModule) -> tuple[str, ...]:
    """The attributes of ``module`` that :class:`CompileNetwork` compiles by default."""
    for cls in type(module).__mro__:
        if cls.__name__ in NETWORK_ATTRIBUTES:
            return NETWORK_ATTRIBUTES[cls.__name__]
    return ()


def _memory_saving_stacks(network: nn.Module) -> list[nn.Module]:
    from lit_rev.revnet.reversible import ReversibleSequence

    return [
        m
        for m in network.modules()
        if isinstance(m, ReversibleSequence) and getattr(m, "memory_saving", False)
    ]


class _CompiledMethod:
    """``module.<name>`` compiled: calls ``torch.compile(type(module).<name>)(module, ...)``.

    Set on the instance (the class stays the eager one, so config parsing never sees a second
    class of that name). A deep copy of the module (as a score's background model is made) gets
    a method bound to the copy, never the original. Dynamo, tracing one compiled method that
    calls another (Glow's ``log_prob`` calls ``log_prob_parts``), inlines the inner one with
    the module passed explicitly.
    """

    def __init__(self, owner: nn.Module, name: str, compiled: Callable):
        self.owner = owner
        self.name = name
        self.compiled = compiled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.compiled(self.owner, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> Any:
        owner = memo.get(id(self.owner))
        if owner is None:  # copied alone: the copy runs the eager method of the same module
            return getattr(type(self.owner), self.name).__get__(self.owner)
        return _CompiledMethod(owner, self.name, self.compiled)


class CompileNetwork(Callback):
    """Compiles the module's network with ``torch.compile`` (inductor on CPU and GPU).

    Which attributes hold the network: ``DensityModule.network``, ``ImageClassifier.backbone``
    and GRADModule's ``encoder``, ``target``, ``readout`` and ``heads`` (or ``attributes``).
    Each is compiled in place (``nn.Module.compile``): parameter names, checkpoints and the
    optimiser are those of the eager network. Besides ``forward``, the methods of
    :data:`COMPILED_METHODS` a network has are compiled too, since density networks are
    trained through ``log_prob_parts``. Compilation happens at the start of ``fit``,
    ``validate``, ``test`` and ``predict`` (after the module has built its layers, as GRADModule
    does once it has seen the data) and is undone when the Trainer tears down.

    A memory-saving reversible stack (:class:`~lit_rev.revnet.reversible.ReversibleSequence`)
    stays an eager ``autograd.Function``: compiling it whole would let AOTAutograd store the
    activations the reconstructing backward exists to avoid. Its blocks' inner modules (F and
    G of each reversible block, each other block whole) are compiled instead, and the rest of
    the network module by module; one line says so.

    Usable from YAML::

        trainer:
          callbacks:
            - class_path: CompileNetwork
              init_args: {mode: max-autotune-no-cudagraphs}

    Args:
        mode: ``torch.compile``'s ``mode`` (``None``: its default).
        dynamic: ``torch.compile``'s ``dynamic``. ``False`` (the default here): one graph per
            input shape; with ``None`` (torch's default) a second shape makes the shapes
            symbolic, which inductor 2.14 fails to compile for the RevNet blocks.
        fullgraph: ``torch.compile``'s ``fullgraph``.
        backend: ``torch.compile``'s ``backend`` (``"inductor"``; ``"eager"`` to debug).
        attributes: the module's attributes to compile; ``None``: :data:`NETWORK_ATTRIBUTES`.
    """

    def __init__(
        self,
        mode: str | None = None,
        dynamic: bool | None = False,
        fullgraph: bool = False,
        backend: str = "inductor",
        attributes: list[str] | None = None,
    ):
        self.options: dict[str, Any] = {"backend": backend, "fullgraph": fullgraph}
        if mode is not None:
            self.options["mode"] = mode
        self.options["dynamic"] = dynamic
        self.attributes = None if attributes is None else tuple(attributes)
        self.compiled: list[str] = []
        self._undo: list[tuple[nn.Module, str | None]] = []
        self._recompile_limit: int | None = None  # dynamo's, as it was before compile()

    def _targets(self, pl_module: LightningModule) -> list[tuple[str, nn.Module]]:
        names = self.attributes if self.attributes is not None else network_attributes(pl_module)
        if not names:
            raise ValueError(
                f"CompileNetwork: no network attributes known for {type(pl_module).__name__}; "
                f"set init_args.attributes to the names of its network modules (known: "
                f"{', '.join(f'{k}: {list(v)}' for k, v in NETWORK_ATTRIBUTES.items())})"
            )
        found = [(n, getattr(pl_module, n, None)) for n in names]
        targets = [(n, m) for n, m in found if isinstance(m, nn.Module)]
        if not targets:
            raise ValueError(
                f"CompileNetwork: attributes={list(names)}: {type(pl_module).__name__} has no "
                "module under any of these names; give the attributes that hold its network"
            )
        return targets

    def _compile_call(self, module: nn.Module, name: str) -> None:
        module.compile(**self.options)
        self._undo.append((module, None))
        self.compiled.append(name)

    def _compile_methods(self, module: nn.Module, name: str) -> None:
        """Compile the :data:`COMPILED_METHODS` that ``module``'s class has (on the instance)."""
        cls = type(module)
        for method in COMPILED_METHODS:
            function = getattr(cls, method, None)
            if callable(function) and method not in vars(module):
                compiled = torch.compile(function, **self.options)
                setattr(module, method, _CompiledMethod(module, method, compiled))
                self._undo.append((module, method))
                self.compiled.append(f"{name}.{method}")

    def _compile_around_stacks(self, module: nn.Module, name: str, stacks: list) -> None:
        """Compile every part of ``module`` except the memory-saving stacks' own control flow."""
        if module in stacks:
            from lit_rev.revnet.reversible import ReversibleBlock

            for i, block in enumerate(module.blocks):
                if isinstance(block, ReversibleBlock):
                    for child_name, child in block.named_children():
                        self._compile_call(child, f"{name}.blocks.{i}.{child_name}")
                else:
                    self._compile_call(block, f"{name}.blocks.{i}")
            return
        for child_name, child in module.named_children():
            child_path = f"{name}.{child_name}"
            if any(s is child or any(s is m for m in child.modules()) for s in stacks):
                self._compile_around_stacks(child, child_path, stacks)
            elif any(True for _ in child.parameters()) or any(True for _ in child.children()):
                self._compile_call(child, child_path)

    def compile(self, pl_module: LightningModule) -> None:
        """Compile the module's networks in place (once; a second call does nothing)."""
        if self._undo:
            return
        for name, network in self._targets(pl_module):
            stacks = _memory_saving_stacks(network)
            if stacks:
                self._compile_around_stacks(network, name, stacks)
                rank_zero_info(
                    f"CompileNetwork: {name} holds {len(stacks)} memory-saving reversible "
                    "stack(s); their blocks' F and G are compiled, the reconstructing backward "
                    "stays eager"
                )
            else:
                self._compile_call(network, name)
            self._compile_methods(network, name)
        # Every module compiled in place shares one code object (Module._call_impl) whose
        # cache holds recompile_limit graphs (8), one per shape, grad mode and structure; past
        # it dynamo runs eagerly without a word. Room for each compiled part in both grad modes:
        needed = 4 * len(self.compiled) + 8
        dynamo_config = torch._dynamo.config
        if dynamo_config.recompile_limit < needed:
            if self._recompile_limit is None:
                self._recompile_limit = dynamo_config.recompile_limit
            dynamo_config.recompile_limit = needed

    def restore(self) -> None:
        """Undo :meth:`compile`: every network runs eagerly again, dynamo's limit as it was."""
        for module, method in reversed(self._undo):
            if method is None:
                module._compiled_call_impl = None
            else:
                delattr(module, method)
        self._undo.clear()
        self.compiled.clear()
        if self._recompile_limit is not None:
            torch._dynamo.config.recompile_limit = self._recompile_limit
            self._recompile_limit = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compile before the first step (the module has built its layers by now)."""
        self.compile(pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compile for a ``validate`` run (within ``fit``: already done)."""
        self.compile(pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compile for a ``test`` run."""
        self.compile(pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compile for a ``predict`` run."""
        self.compile(pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Leave the module eager, as it was before the run."""
        self.restore()


# --- terminal output ------------------------------------------------------------------------
class StepBoundProgressBar(RichProgressBar):
    """Rich progress bar whose epoch label shows the bound the run stops at.

    It reads ``Epoch 4/9`` when the run is bounded by ``max_epochs`` and
    ``Epoch 4 (max_steps 800)`` when it is bounded by steps only (Lightning prints
    ``Epoch 4/-2`` there: ``max_epochs - 1`` with ``max_epochs=-1``).
    """

    def _get_train_description(self, current_epoch: int) -> str:
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

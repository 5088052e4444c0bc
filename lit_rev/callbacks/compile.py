"""``torch.compile`` of a module's networks as a callback: :class:`CompileNetwork`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

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


def _is_a(module: nn.Module, class_name: str) -> bool:
    """Whether ``module``'s class or a base is called ``class_name`` (no slice is imported)."""
    return any(cls.__name__ == class_name for cls in type(module).__mro__)


def _memory_saving_stacks(network: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in network.modules()
        if _is_a(m, "ReversibleSequence") and getattr(m, "memory_saving", False)
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
            for i, block in enumerate(module.blocks):
                if _is_a(block, "ReversibleBlock"):
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

"""Package names whose modules load on first use (PEP 562 module ``__getattr__``).

A slice's ``__init__`` imports its torch-only modules; the modules built on Lightning or
torchmetrics (which import matplotlib, among much else) load when one of their names is first
looked up, so ``from lit_rev.revnet import ReversibleBlock`` costs torch alone. This module
imports no slice.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def lazy_names(
    package: str, modules: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``modules`` load on first use.

    Args:
        package: the package's ``__name__``.
        modules: the full name of each lazily loaded module -> the names the package hands
            out from it.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package: ``__getattr__(name)`` imports the
        name's module, keeps the object in the package namespace (later lookups do not come
        back) and returns it; any other name raises an ``AttributeError`` that says where
        internals are imported from. ``__dir__`` lists the lazy names too.
    """
    home = {name: module for module, names in modules.items() for name in names}
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        if name not in home:
            raise AttributeError(
                f"module {package!r} has no attribute {name!r}: its public names are in "
                f"{package}.__all__; import anything else from the module that defines it "
                f"({package}.<module>)"
            )
        value = getattr(importlib.import_module(home[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *home})

    return __getattr__, __dir__

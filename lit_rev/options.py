"""Checks of option values that hold with or without the command line.

Choices are typed as ``Literal[...]`` so that the config parser rejects a bad value while
it reads the YAML, names the key and lists the choices in ``--help``. A Literal annotation
checks nothing when a class is built from Python, so constructors also call
:func:`check_choice` with the same Literal.
"""

from __future__ import annotations

from typing import Any, get_args


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``.

    Args:
        name: the argument's name, as the error shows it.
        value: the value given.
        choices: a ``Literal[...]`` type (its arguments are the choices) or a collection.
    """
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")

"""What a model raises where its settings do not fit its data: :class:`FitMismatch`.

The model knows its own arguments and the DataModule's; it does not know how a config file
spells them. It names both sides by argument paths (``network.image_size``: the ``image_size``
of its ``network`` argument), and the config layer (:mod:`lit_rev.config`) turns them into the
config's keys before the user sees the message.
"""

from __future__ import annotations

from typing import Any


class FitMismatch(ValueError):
    """A model setting that disagrees with the data: both keys, both values and the fix.

    The message reads ``<model key> = <value> but <data key> = <value> (<detail>): set
    <model key>: <fix>, or <data key>: <fix> <effect>``.

    Args:
        model_key: the model's argument path, e.g. ``"network.image_size"`` or ``"n_bits"``.
        model_value: its value.
        data_key: the DataModule's argument path, e.g. ``"image_size"``.
        data_value: the value the data have (the effective one where the argument is unset).
        detail: what the data's value means, e.g. ``"the images are 8x8"``.
        model_fix: the model's value that fits (default: ``data_value``).
        model_alternative: another fix on the model's side, e.g. ``"null, to take the data's"``.
        data_fix: the data's value that fits the model (default: ``model_value``).
        data_effect: what that data setting does, e.g. ``"to resize the images"``.
    """

    def __init__(
        self,
        model_key: str,
        model_value: Any,
        data_key: str,
        data_value: Any,
        detail: str = "",
        model_fix: Any = None,
        model_alternative: str = "",
        data_fix: Any = None,
        data_effect: str = "",
    ):
        self.model_key = model_key
        self.model_value = model_value
        self.data_key = data_key
        self.data_value = data_value
        self.detail = detail
        self.model_fix = data_value if model_fix is None else model_fix
        self.model_alternative = model_alternative
        self.data_fix = model_value if data_fix is None else data_fix
        self.data_effect = data_effect
        super().__init__(self.message(model_key, f"the DataModule's {data_key}"))

    def message(self, model_key: str, data_key: str) -> str:
        """The message with the two settings named ``model_key`` and ``data_key``."""
        detail = f" ({self.detail})" if self.detail else ""
        alternative = f" ({self.model_alternative})" if self.model_alternative else ""
        effect = f" {self.data_effect}" if self.data_effect else ""
        return (
            f"{model_key} = {self.model_value} but {data_key} = {self.data_value}{detail}: "
            f"set {model_key}: {self.model_fix}{alternative}, "
            f"or {data_key}: {self.data_fix}{effect}"
        )


class CheckpointMismatch(FitMismatch):
    """Data that disagree with what a checkpoint's model was trained on.

    ``model_key`` names what the checkpoint recorded (``"n_bits"``, ``"shape"``); the fix is on
    the data's side, or another checkpoint.
    """

    def message(self, model_key: str, data_key: str) -> str:
        """The message with the data's setting named ``data_key`` (``model_key`` is unused)."""
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"the checkpoint was trained with {self.model_key} = {self.model_value} but "
            f"{data_key} = {self.data_value}{detail}: set {data_key}: {self.data_fix}, "
            f"or pass a checkpoint trained on data with {self.model_key} = {self.data_value}"
        )

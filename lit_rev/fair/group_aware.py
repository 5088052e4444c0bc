"""Models whose predictions read the protected groups as well as ``x``.

:class:`~lit_rev.fair.base.FairModule` calls ``predict_proba(x)`` and ``representation(x)``
with the inputs only. ThresholdOptimizer picks a threshold per group, and VFA's encoder is
conditioned on ``s``: both need the groups at prediction time. :class:`GroupAwareModule`
hands them over: its validation, test and predict steps and its :meth:`embed` make each
batch's groups available as :attr:`groups` while the base class's code runs, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from lit_rev.fair.base import FairModule


class GroupAwareModule(FairModule):
    """A :class:`FairModule` whose ``predict_proba`` and ``representation`` read :attr:`groups`.

    Subclasses call :attr:`groups` inside ``predict_proba`` / ``representation``: the
    ``(B, A)`` group codes of the rows being predicted.
    """

    _batch_groups: Tensor | None = None
    reads_protected_at_prediction = True

    @property
    def groups(self) -> Tensor:
        """``(B, A)`` group codes of the rows being predicted."""
        if self._batch_groups is None:
            raise RuntimeError(
                f"{type(self).__name__} predicts from x and the protected groups s; call it "
                "through its validation/test/predict steps or inside `with module.given(s):`"
            )
        return self._batch_groups

    @contextmanager
    def given(self, s: Tensor) -> Iterator[None]:
        """Within the block, ``predict_proba`` and ``representation`` read the groups ``s``."""
        previous, self._batch_groups = self._batch_groups, s
        try:
            yield
        finally:
            self._batch_groups = previous

    def validation_step(self, batch, batch_idx):
        """The base class's step, with the batch's groups given."""
        with self.given(batch[2]):
            return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """The base class's step, with the batch's groups given."""
        with self.given(batch[2]):
            return super().test_step(batch, batch_idx, dataloader_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """The base class's step, with the batch's groups given."""
        with self.given(batch[2]):
            return super().predict_step(batch, batch_idx, dataloader_idx)

    @torch.no_grad()
    def representation_given(self, x: Tensor, s: Tensor) -> Tensor:
        """The representation of ``x`` with its rows' protected groups ``s`` in context."""
        with self.given(s.to(self.device)):
            return self.representation(x)

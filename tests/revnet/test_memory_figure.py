"""Activation memory against depth (lit_rev.revnet.memory_figure): rows and plot."""

import math

import pytest

from lit_rev.report import NonFiniteResult
from lit_rev.revnet.memory_figure import revnet_memory_plot, revnet_memory_rows


def test_revnet_memory_rejects_an_unknown_depth():
    with pytest.raises(ValueError, match="depths: 56"):
        revnet_memory_rows(depths=(56,))


def test_non_finite_memory_is_an_error_not_a_plot():
    rows = [{"net": "revnet38", "depth": 38, "backward": "plain", "saved_mib": math.nan}]
    with pytest.raises(NonFiniteResult, match="1 of 1 values of saved MiB"):
        revnet_memory_plot(rows, 2, 8)

"""The runtime check behind every ``Literal`` option."""

from typing import Literal

import pytest

from lit_rev.options import check_choice

Mode = Literal["pred", "auto"]


def test_a_choice_passes_and_anything_else_names_the_argument_and_the_choices():
    check_choice("mode", "auto", Mode)
    check_choice("optimizer", "adam", {"adam": 1, "sgd": 2})
    with pytest.raises(ValueError, match=r"mode must be one of 'pred', 'auto', got 'Auto'"):
        check_choice("mode", "Auto", Mode)
    with pytest.raises(ValueError, match=r"optimizer must be one of 'adam', 'sgd', got 'adamw'"):
        check_choice("optimizer", "adamw", {"adam": 1, "sgd": 2})

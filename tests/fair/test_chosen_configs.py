"""Each fair config holds the values its committed chosen file (fair_search's choice) names.

`python -m lit_rev fit --config configs/fair/<name>.yaml` must train the setting the results
report, so a chosen value left out of its config (the library default then applies) is a bug.
"""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
CHOSEN = sorted((ROOT / "configs" / "fair" / "chosen").glob("*_chosen.json"))


def _value(settings, dotted):
    for key in dotted.split("."):
        if not isinstance(settings, dict) or key not in settings:
            return "<not set>"
        settings = settings[key]
    return settings


def _expected(chosen):
    """(config path, dotted key, chosen value) for every override of a chosen file."""
    configs = chosen["config"].split("+")
    for override in chosen["overrides"]:
        key, value = override.removeprefix("--").split("=", 1)
        if key.startswith("stage1:"):
            targets, key = configs[:1], key.removeprefix("stage1:")
        else:
            targets = configs
        for config in targets:
            yield config, key, yaml.safe_load(value)


def test_there_are_chosen_files():
    assert len(CHOSEN) >= 20


@pytest.mark.parametrize("path", CHOSEN, ids=[p.stem for p in CHOSEN])
def test_the_config_holds_the_chosen_values_and_names_the_chosen_file(path):
    chosen = json.loads(path.read_text())
    for config, key, value in _expected(chosen):
        text = (ROOT / config).read_text()
        assert _value(yaml.safe_load(text), key) == value, (
            f"{config}: {key} is {_value(yaml.safe_load(text), key)!r}, but "
            f"{path.relative_to(ROOT)} chose {value!r}; set it in the config"
        )
        leaf = key.rsplit(".", 1)[-1]
        lines = [line for line in text.splitlines() if line.strip().startswith(f"{leaf}:")]
        assert any(str(path.relative_to(ROOT)) in line for line in lines), (
            f"{config}: the line setting {key} does not name {path.relative_to(ROOT)}"
        )

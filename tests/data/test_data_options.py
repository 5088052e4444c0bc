"""Data options with a fixed set of choices.

The config parser rejects a bad value while it reads the YAML and names the key; built from
Python, the DataModules, the encoder and the augmentation still raise ``ValueError`` (a
``Literal`` annotation alone checks nothing at run time).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lit_rev.cli import main
from lit_rev.data import Digits, GermanDataModule, ImageDataModule
from lit_rev.data.tables import Encoder, Table
from lit_rev.data.transforms import augment

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "config, key, bad, choices",
    [
        ("quickstart.yaml", "augment", "mixup", "'none', 'flip', 'crop_flip'"),
        ("quickstart.yaml", "ood_split", "val", "'test', 'all'"),
        ("fair/vanilla_german.yaml", "unknown_categories", "drop", "'error', 'ignore'"),
    ],
    ids=["augment", "ood_split", "unknown_categories"],
)
def test_the_config_parser_rejects_a_bad_choice_naming_the_key(
    tmp_path, capsys, config, key, bad, choices
):
    settings = yaml.safe_load((REPO / "configs" / config).read_text())
    settings["data"]["init_args"][key] = bad
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f'Parser key "{key}"' in err and bad in err and choices in err


def test_a_good_choice_parses(tmp_path, capsys):
    settings = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    settings["data"]["init_args"]["augment"] = "crop_flip"
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    assert "augment: crop_flip" in capsys.readouterr().out


def _reassigned_encoder_fit():
    encoder = Encoder((), ())
    encoder.unknown = "drop"
    encoder.fit(Table("t", {}, np.array([1])))


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: ImageDataModule(Digits(), augment="mixup"),
            "augment must be one of 'none', 'flip', 'crop_flip', got 'mixup'",
        ),
        (
            lambda: ImageDataModule(Digits(), ood_split="val"),
            "ood_split must be one of 'test', 'all', got 'val'",
        ),
        (
            lambda: augment(torch.zeros(1, 4, 4, dtype=torch.uint8), "rotate"),
            "kind must be one of 'none', 'flip', 'crop_flip', got 'rotate'",
        ),
        # checked when the DataModule is built, not only when setup() fits the encoder
        (
            lambda: GermanDataModule(unknown_categories="drop"),
            "unknown_categories must be one of 'error', 'ignore', got 'drop'",
        ),
        (
            lambda: Encoder(("age",), (), unknown="drop"),
            "unknown must be one of 'error', 'ignore', got 'drop'",
        ),
        (_reassigned_encoder_fit, "unknown must be one of 'error', 'ignore', got 'drop'"),
    ],
    ids=["augment", "ood_split", "augment-kind", "unknown_categories", "encoder", "encoder-fit"],
)
def test_python_callers_get_a_value_error_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        build()

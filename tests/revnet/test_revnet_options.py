"""Options with a fixed set of choices: the config parser rejects a bad value naming the key,
and the Python constructors still raise ``ValueError`` (a Literal alone checks nothing at run
time)."""

from typing import get_args

import pytest

from lit_rev.cli import main
from lit_rev.revnet import ImageClassifier, ResNet, RevNet, build
from lit_rev.revnet.networks import ARCHITECTURES, Preset
from tests.revnet.test_revnet_cli import TINY


@pytest.mark.parametrize(
    "old, new, key, bad, choices",
    [
        (
            "in_channels: 1,",
            "in_channels: 1, preset: revnet39,",
            "preset",
            "revnet39",
            "'revnet38'",
        ),
        ("std: [0.31]", "std: [0.31]\n    interval: hour", "interval", "hour", "'epoch'"),
    ],
    ids=["RevNet.preset", "ImageClassifier.interval"],
)
def test_the_config_parser_rejects_a_bad_choice_naming_the_key(
    tmp_path, capsys, old, new, key, bad, choices
):
    text = TINY.format(batch=4, saving="true")
    assert text.count(old) == 1
    config = tmp_path / "tiny.yaml"
    config.write_text(text.replace(old, new))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f'Parser key "{key}"' in err and bad in err and choices in err


def _backbone():
    return RevNet(units=[1], channels=[8, 8], num_classes=4, in_channels=1)


@pytest.mark.parametrize(
    "build_it, name, bad",
    [
        (lambda: RevNet("revnet39"), "preset", "revnet39"),
        (lambda: ResNet("ResNet32"), "preset", "ResNet32"),
        (lambda: build("resnet50"), "preset", "resnet50"),
        (
            lambda: ImageClassifier(_backbone(), num_classes=4, interval="epochs"),
            "interval",
            "epochs",
        ),
    ],
    ids=["RevNet.preset", "ResNet.preset", "build.preset", "ImageClassifier.interval"],
)
def test_python_callers_get_a_value_error_naming_the_argument(build_it, name, bad):
    with pytest.raises(ValueError, match=rf"^{name} must be one of '.*', got '{bad}'$"):
        build_it()


def test_the_preset_choices_are_the_architectures():
    assert set(get_args(Preset)) == set(ARCHITECTURES)
    assert len(get_args(Preset)) == len(ARCHITECTURES)

"""Fairness options with a fixed set of choices.

The config parser rejects a bad value while it reads the YAML, names the key and lists the
choices; built from Python, the modules and the probe still raise ``ValueError`` (a
``Literal`` annotation alone checks nothing at run time).
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from lit_rev.cli import main
from lit_rev.fair import ALFRModule, FrozenEncoderClassifier, GRADModule, LFRModule
from lit_rev.fair.probe import leakage_probe

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "fair"


def _config_with(tmp_path, config: str, key: str, value) -> Path:
    settings = yaml.safe_load((CONFIGS / config).read_text())
    settings["model"]["init_args"][key] = value
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize(
    "config, key, bad, choices",
    [
        ("grad_pred_german.yaml", "mode", "both", "'pred', 'auto'"),
        ("grad_pred_german.yaml", "lr_schedule", "linear", "'constant', 'cosine'"),
        ("lfr_german.yaml", "init", "uniform", "'kmeans++', 'normal'"),
        ("alfr_german.yaml", "probes", ["logistic", "svm"], "'logistic', 'mlp'"),
    ],
    ids=["mode", "lr_schedule", "init", "probes"],
)
def test_the_config_parser_rejects_a_bad_choice_naming_the_key(
    tmp_path, capsys, config, key, bad, choices
):
    path = _config_with(tmp_path, config, key, bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    bad_value = bad[-1] if isinstance(bad, list) else bad
    assert f'Parser key "{key}"' in err and f"Got value: {bad_value}" in err and choices in err


@pytest.mark.parametrize(
    "config, key, good, printed",
    [
        ("grad_pred_german.yaml", "mode", "auto", "mode: auto"),
        ("grad_pred_german.yaml", "lr_schedule", "constant", "lr_schedule: constant"),
        ("lfr_german.yaml", "init", "normal", "init: normal"),
        ("alfr_german.yaml", "probes", ["logistic", "mlp"], "- mlp"),
    ],
    ids=["mode", "lr_schedule", "init", "probes"],
)
def test_every_choice_parses(tmp_path, capsys, config, key, good, printed):
    path = _config_with(tmp_path, config, key, good)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    assert printed in capsys.readouterr().out


def _probe_with(kind):
    z = np.arange(8, dtype=float)[:, None]
    s = np.array([0, 1] * 4)
    return leakage_probe(z, s, z, s, kind=kind)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: GRADModule(mode="both"), "mode must be one of 'pred', 'auto', got 'both'"),
        (
            lambda: GRADModule(lr_schedule="linear"),
            "lr_schedule must be one of 'constant', 'cosine', got 'linear'",
        ),
        (
            lambda: LFRModule(init="uniform"),
            r"init must be one of 'kmeans\+\+', 'normal', got 'uniform'",
        ),
        (
            lambda: ALFRModule(probes=["logistic", "svm"]),
            "probes must be one of 'logistic', 'mlp', got 'svm'",
        ),
        (
            lambda: FrozenEncoderClassifier(probes=["svm"]),
            "probes must be one of 'logistic', 'mlp', got 'svm'",
        ),
        (lambda: _probe_with("svm"), "kind must be one of 'logistic', 'mlp', got 'svm'"),
    ],
    ids=["mode", "lr_schedule", "init", "probes", "probes-second-stage", "probe-kind"],
)
def test_python_callers_get_a_value_error_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        build()


def test_a_bad_probe_fails_when_the_module_is_built_not_after_training():
    """Before, a typo in ``probes`` surfaced only in ``on_test_epoch_end``, after the fit."""
    with pytest.raises(ValueError, match="probes"):
        GRADModule(input_dim=3, protected_classes=[2], probes=["logistc"])

"""Options with a fixed set of choices: the config parser rejects a bad value naming the key,
and the Python constructors and functions still raise ``ValueError`` (a Literal alone checks
nothing at run time)."""

from typing import get_args

import pytest
import torch

from lit_rev.cli import main
from lit_rev.commands import analysis as analysis_command
from lit_rev.density import DensityModule, Glow, analysis, bits_per_dim
from lit_rev.density.flows import FlowStep
from lit_rev.density.module import OPTIMIZERS, Optimizer
from tests.test_cli import tiny_config
from tests.toy_densities import UniformDensity


@pytest.mark.parametrize(
    "old, new, key, bad, choices",
    [
        ("warmup_steps: 2", "warmup_steps: 2\n    optimizer: sgd", "optimizer", "sgd", "'adamw'"),
        (
            "warmup_steps: 2",
            "warmup_steps: 2\n    nonfinite: ignore",
            "nonfinite",
            "ignore",
            "'skip'",
        ),
        (
            "hidden_channels: 8}",
            "hidden_channels: 8, coupling: spline}",
            "coupling",
            "spline",
            "'additive'",
        ),
    ],
    ids=["optimizer", "nonfinite", "coupling"],
)
def test_the_config_parser_rejects_a_bad_choice_naming_the_key(
    tmp_path, capsys, old, new, key, bad, choices
):
    config = tiny_config(tmp_path, **{old: new})
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f'Parser key "{key}"' in err and bad in err and choices in err


def _glow(**kwargs):
    return Glow(in_channels=1, image_size=4, levels=1, steps=1, hidden_channels=4, **kwargs)


@pytest.mark.parametrize(
    "build, name, bad, choices",
    [
        (
            lambda: DensityModule(UniformDensity(), optimizer="lbfgs"),
            "optimizer",
            "lbfgs",
            "'adam', 'adamax', 'adamw'",
        ),
        (
            lambda: DensityModule(UniformDensity(), nonfinite="ignore"),
            "nonfinite",
            "ignore",
            "'raise', 'skip'",
        ),
        (lambda: _glow(coupling="spline"), "coupling", "spline", "'additive', 'affine'"),
        # no flow step is built, so only Glow's own check can catch it
        (
            lambda: Glow(1, 4, levels=1, steps=0, coupling="spline"),
            "coupling",
            "spline",
            "'additive', 'affine'",
        ),
        (lambda: FlowStep(4, 4, coupling="Affine"), "coupling", "Affine", "'additive', 'affine'"),
        (
            lambda: bits_per_dim(torch.zeros(2), 4, 8, likelihood="nats"),
            "likelihood",
            "nats",
            "'density', 'mass'",
        ),
        (
            lambda: analysis.hessian_trace(
                lambda x: -(x**2).flatten(1).sum(1), torch.zeros(2), torch.ones(2), method="mc"
            ),
            "method",
            "mc",
            "'exact', 'hutchinson'",
        ),
        (
            lambda: analysis.covariance_difference_trace(
                lambda x: -(x**2).flatten(1).sum(1),
                torch.zeros(2),
                torch.ones(3, 2),
                torch.ones(3, 2),
                method="mc",
            ),
            "method",
            "mc",
            "'exact', 'hutchinson'",
        ),
        (
            lambda: analysis.second_order(
                DensityModule(_glow(), n_bits=8),
                torch.zeros(3, 1, 4, 4, dtype=torch.long),
                torch.ones(3, 1, 4, 4, dtype=torch.long),
                method="mc",
            ),
            "method",
            "mc",
            "'exact', 'hutchinson'",
        ),
    ],
    ids=[
        "DensityModule.optimizer",
        "DensityModule.nonfinite",
        "Glow.coupling",
        "Glow.coupling-no-steps",
        "FlowStep.coupling",
        "bits_per_dim.likelihood",
        "hessian_trace.method",
        "covariance_difference_trace.method",
        "second_order.method",
    ],
)
def test_python_callers_get_a_value_error_naming_the_argument(build, name, bad, choices):
    with pytest.raises(ValueError, match=rf"^{name} must be one of {choices}, got '{bad}'$"):
        build()


def test_every_optimizer_name_has_a_class():
    assert set(get_args(Optimizer)) == set(OPTIMIZERS)


def test_the_analysis_command_rejects_a_bad_method(capsys):
    with pytest.raises(SystemExit) as exit_info:
        analysis_command.main(["second_order", "--config", "unused.yaml", "--method", "mc"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "--method" in err and "'mc'" in err and "exact" in err and "hutchinson" in err

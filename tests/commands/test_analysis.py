"""python -m lit_rev.commands.analysis refuses what would give a meaningless table: random
weights (no --ckpt_path) and a model that is not a density model."""

import json
from pathlib import Path

import pytest

from lit_rev.commands.analysis import main
from tests.test_cli import tiny_config

CONFIGS = Path(__file__).parents[2] / "configs"


def test_without_a_checkpoint_the_analysis_is_refused_unless_asked_for(tmp_path, capsys):
    config = str(tiny_config(tmp_path / "tiny"))
    args = ["graying", "--config", config, "--out_dir", str(tmp_path), "--max_images", "4"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and not (tmp_path / "graying.json").exists()
    err = capsys.readouterr().err
    assert "graying without --ckpt_path" in err and "random weights" in err
    assert "--allow_untrained" in err and config in err
    rows = main([*args, "--allow_untrained"])  # on purpose: it runs
    assert len(rows) == 5 and json.loads((tmp_path / "graying.json").read_text())["rows"]


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        ("revnet/quick_revnet38_mnist5k.yaml", "lit_rev.revnet.module.ImageClassifier"),
        ("fair/vanilla_german.yaml", "lit_rev.fair.grad.GRADModule"),
    ],
)
def test_a_config_of_another_kind_of_model_is_named_not_a_traceback(tmp_path, capsys, config, kind):
    path = str(CONFIGS / config)
    with pytest.raises(SystemExit) as stop:
        main(["decomposition", "--config", path, "--out_dir", str(tmp_path), "--allow_untrained"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"--config {path} builds a {kind}, not a density model" in err
    assert "need a DensityModule" in err

"""Where a benchmark entry's model config is found: the current directory, then the benchmark
YAML's directory and its ancestors; never the package's source tree."""

import shutil
from pathlib import Path

import pytest
import yaml

from lit_rev.commands import ood_benchmark
from lit_rev.evaluation.ood_benchmark import BenchmarkError, ModelSpec, resolve_config

REPO = Path(__file__).resolve().parents[3]
GLOW = "configs/density/quick_glow_mnist5k.yaml"
TINY_GLOW = [
    "--model.init_args.network.init_args.steps=1",
    "--model.init_args.network.init_args.hidden_channels=4",
]


@pytest.fixture
def tree(tmp_path):
    """A copy of the repository's ``configs/`` with a config the source tree does not have."""
    root = tmp_path / "tree"
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copy(root / GLOW, root / "configs" / "density" / "only_in_the_copy.yaml")
    return root


def test_a_config_is_found_below_the_benchmark_yaml_s_ancestors_not_the_source(
    tree, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ood_dir = tree / "configs" / "ood"
    # the copy's file, though the source tree holds one at the same relative path
    assert resolve_config(GLOW, [ood_dir]) == str(tree / GLOW)
    assert resolve_config("density/only_in_the_copy.yaml", [ood_dir]) == str(
        tree / "configs" / "density" / "only_in_the_copy.yaml"
    )
    # the current directory comes first, and its path is kept as written
    (elsewhere / "configs" / "density").mkdir(parents=True)
    shutil.copy(tree / GLOW, elsewhere / GLOW)
    assert resolve_config(GLOW, [ood_dir]) == GLOW
    # an absolute path is taken as it is
    assert resolve_config(str(tree / GLOW), [ood_dir]) == str(tree / GLOW)


def test_a_missing_config_names_the_detector_the_path_and_where_it_looked(tree, tmp_path):
    spec = ModelSpec("glow", "configs/density/no_such.yaml")
    with pytest.raises(BenchmarkError) as error:
        spec.resolve([tree / "configs" / "ood"])
    message = str(error.value)
    assert "detector glow" in message and "configs/density/no_such.yaml" in message
    assert str(tree / "configs" / "ood") in message and "absolute path" in message


def test_the_command_finds_a_copied_tree_s_configs_from_another_directory(
    tree, tmp_path, monkeypatch, capsys
):
    benchmark = yaml.safe_load((tree / "configs" / "ood" / "mnist5k_waic.yaml").read_text())
    benchmark["detectors"] = [
        {
            "class_path": "DensityEntry",
            "init_args": {
                "name": "glow",
                "config": "configs/density/only_in_the_copy.yaml",
                "scores": ["bpd"],
                "overrides": TINY_GLOW,
            },
        }
    ]
    benchmark["data"]["init_args"].update(max_test=16, max_train=32)
    path = tree / "configs" / "ood" / "copied.yaml"
    path.write_text(yaml.safe_dump(benchmark))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ood_benchmark.main(["--config", str(path), "--check_only", "true"])
    assert "1 detectors fit the data (glow/bpd)" in capsys.readouterr().out

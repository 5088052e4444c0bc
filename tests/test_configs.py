"""Every YAML in configs/ parses and smoke-runs ``fit`` and ``test`` (one batch) on CPU.

Configs that need torchvision data run on tiny fake files in the real on-disk format. Parsing
is in the fast loop for every config; the smoke runs of all but the quickstart are ``slow``
(the paper-sized PixelCNN++ and Glow take tens of seconds each on a CPU).
"""

from pathlib import Path

import pytest
import yaml

from lit_rev.cli import main

REPO = Path(__file__).resolve().parents[1]
# configs/ood/ holds benchmark configs (python -m lit_rev.commands.ood_benchmark), tested with it
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "ood")


def smoke_args(config: Path, root: Path) -> list[str]:
    args = [
        "--config",
        str(config),
        "--trainer.fast_dev_run=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
    ]
    data_args = (yaml.safe_load(config.read_text()).get("data") or {}).get("init_args") or {}
    for key, small in (("batch_size", 2), ("test_batch_size", 2), ("num_workers", 0)):
        if key in data_args:
            args.append(f"--data.init_args.{key}={small}")
    return args


def test_configs_exist():
    assert (REPO / "configs" / "quickstart.yaml") in CONFIGS


def config_id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_config_parses(config, fake_vision, tmp_path, monkeypatch, capsys):
    """``--print_config`` parses and validates the whole config (every class path and
    argument) without building the model, then exits 0."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["fit", *smoke_args(config, tmp_path), "--print_config"])
    assert stopped.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(c, marks=() if c.name == "quickstart.yaml" else pytest.mark.slow)
        for c in CONFIGS
    ],
    ids=config_id,
)
def test_config_parses_and_smoke_runs(config, fake_vision, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = smoke_args(config, tmp_path)
    main(["fit", *args])
    main(["test", *args])

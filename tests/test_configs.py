"""Every YAML in configs/ parses and smoke-runs ``fit`` and ``test`` (two batches) on CPU.

Configs that need torchvision data run on tiny fake files in the real on-disk format.
"""

from pathlib import Path

import pytest
import yaml

from lit_rev.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def smoke_args(config: Path, root: Path) -> list[str]:
    args = [
        "--config",
        str(config),
        "--trainer.fast_dev_run=2",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
    ]
    data_args = (yaml.safe_load(config.read_text()).get("data") or {}).get("init_args") or {}
    for key, small in (("batch_size", 4), ("test_batch_size", 4), ("num_workers", 0)):
        if key in data_args:
            args.append(f"--data.init_args.{key}={small}")
    return args


def test_configs_exist():
    assert (REPO / "configs" / "quickstart.yaml") in CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_parses_and_smoke_runs(config, fake_vision, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = smoke_args(config, tmp_path)
    main(["fit", *args])
    main(["test", *args])

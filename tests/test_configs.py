"""Every YAML in configs/ parses and smoke-runs ``fit`` and ``test`` (one batch) on CPU.

Configs that need torchvision data run on tiny fake files in the real on-disk format. Parsing
is in the fast loop for every config; the smoke runs of all but the quickstart are ``slow``.

A smoke run checks that the config's pieces fit together (data, module, callbacks, loops), not
the network's size: the networks of paper size (PixelCNN++ with 160 filters, Glow with 32
steps of width 512, RevNets of 38 to 164 layers) run shrunk through config overrides
(:data:`SHRINK`), which took the suite's slowest tests from tens of seconds to a few. Each
shrunk config's own, paper-size network is still built once, by
``test_paper_size_network_builds``, which counts its parameters.
"""

from pathlib import Path

import pytest
import yaml

from lit_rev.cli import main
from lit_rev.config import instantiate
from lit_rev.revnet.networks import ARCHITECTURES

REPO = Path(__file__).resolve().parents[1]
# configs/ood/ holds benchmark configs (python -m lit_rev.commands.ood_benchmark), tested with it
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "ood")


#: Network arguments a smoke run overrides, per network class (short name), where the config's
#: network is larger. RevNets and ResNets get 2 units per stage (one downsampling unit, one
#: plain), in every stage of their preset.
SHRINK: dict[str, dict[str, int]] = {
    "Glow": {"steps": 2, "hidden_channels": 16},
    "PixelCNNPP": {"resnets_per_scale": 1, "filters": 16},
}
UNITS_PER_STAGE = 2


def network_section(config: Path) -> tuple[str, str, dict] | None:
    """``(key, class short name, init_args)`` of the config's network, or ``None``."""
    model = (yaml.safe_load(config.read_text()).get("model") or {}).get("init_args") or {}
    for key in ("network", "backbone"):
        network = model.get(key)
        if isinstance(network, dict) and "class_path" in network:
            return key, network["class_path"].rsplit(".", 1)[-1], network.get("init_args") or {}
    return None


def shrink_args(config: Path) -> list[str]:
    """The overrides that shrink the config's network for a smoke run (``[]``: none needed)."""
    section = network_section(config)
    if section is None:
        return []
    key, name, init_args = section
    prefix = f"--model.init_args.{key}.init_args"
    if name in ("RevNet", "ResNet") and "units" not in init_args:
        stages = len(ARCHITECTURES[init_args.get("preset", "revnet38")].units)
        return [f"{prefix}.units=[{', '.join([str(UNITS_PER_STAGE)] * stages)}]"]
    return [
        f"{prefix}.{arg}={small}"
        for arg, small in SHRINK.get(name, {}).items()
        if int(init_args.get(arg, 0)) > small
    ]


# The quickstart runs as the README runs it (its smoke run is the fast loop's one).
SHRUNK = [c for c in CONFIGS if c.name != "quickstart.yaml" and shrink_args(c)]


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
    return args + (shrink_args(config) if config in SHRUNK else [])


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def paper_networks() -> dict[str, list[Path]]:
    """The distinct networks of the shrunk configs (class and arguments), each with its configs."""
    found: dict[str, list[Path]] = {}
    for config in SHRUNK:
        _, name, init_args = network_section(config)
        found.setdefault(f"{name}({yaml.safe_dump(init_args, sort_keys=True)})", []).append(config)
    return found


PAPER_NETWORKS = paper_networks()


@pytest.mark.slow
@pytest.mark.parametrize(
    "configs", PAPER_NETWORKS.values(), ids=lambda cs: "+".join(c.stem for c in cs)
)
def test_paper_size_network_builds(configs):
    """Each network the shrunk configs name builds once at its own size and counts its
    parameters; the smoke run's shrunk one has the same class and fewer parameters, so the
    overrides changed only its size."""
    config = configs[0]
    key = network_section(config)[0]
    model, _ = instantiate(config)
    small, _ = instantiate(config, shrink_args(config))
    paper, shrunk = getattr(model, key), getattr(small, key)
    assert type(shrunk) is type(paper)
    assert parameters(shrunk) < parameters(paper), (parameters(paper), parameters(shrunk))
    print(f"{config.name}: {parameters(paper):,} parameters (smoke run: {parameters(shrunk):,})")


def test_configs_exist():
    assert (REPO / "configs" / "quickstart.yaml") in CONFIGS


def test_every_paper_size_config_is_shrunk_for_its_smoke_run():
    names = {str(c.relative_to(REPO / "configs")) for c in SHRUNK}
    for paper in ("density/glow_cifar10.yaml", "density/pixelcnnpp_cifar10.yaml"):
        assert paper in names
    assert "revnet/revnet104_imagenet.yaml" in names
    assert "quickstart.yaml" not in names  # already small: runs as the README says
    # the three CIFAR-size Glows of the papers share one network: built once
    assert len(PAPER_NETWORKS) < len(SHRUNK)
    assert shrink_args(REPO / "configs/density/glow_cifar10.yaml") == [
        "--model.init_args.network.init_args.steps=2",
        "--model.init_args.network.init_args.hidden_channels=16",
    ]


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

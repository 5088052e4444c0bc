"""The public surface of each package: ``__all__`` names what a user builds with, and a plain
import of a torch-only model costs no Lightning, torchmetrics or matplotlib."""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lit_rev.data", "lit_rev.density", "lit_rev.fair", "lit_rev.ood", "lit_rev.revnet")


def documented_constant(package, name: str) -> bool:
    """A value without a docstring (a tuple, a dict) is documented by a comment above it."""
    for path in sorted(Path(package.__path__[0]).glob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(rf"{name}\s*[:=]", line):
                return i > 0 and lines[i - 1].lstrip().startswith("#")
    return False


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_exists_is_defined_in_the_package_and_is_documented(name):
    package = importlib.import_module(name)
    public = package.__all__
    assert len(public) == len(set(public)), "a name is listed twice"
    assert set(public) <= set(dir(package))
    for attr in public:
        obj = getattr(package, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            # a lazily loaded name must come from the package itself, not another slice
            assert obj.__module__.startswith(name + "."), (attr, obj.__module__)
            assert (obj.__doc__ or "").strip(), f"{name}.{attr} has no docstring"
        else:
            assert documented_constant(package, attr), f"{name}.{attr} has no comment above it"


@pytest.mark.parametrize(
    "module, name",
    [
        ("lit_rev.density.pixelcnnpp", "WeightNorm"),
        ("lit_rev.density.flows", "ActNorm"),
        ("lit_rev.density.ood_evaluation", "ood_rows"),
        ("lit_rev.revnet.networks", "PAPER_PARAMS"),
        ("lit_rev.revnet.networks", "revnet38"),
        ("lit_rev.revnet.blocks", "residual_function"),
        ("lit_rev.fair.vfa", "mmd_squared"),
        ("lit_rev.ood.detectors", "DETECTORS"),
        ("lit_rev.data.transforms", "quantize"),
    ],
)
def test_internals_are_imported_from_their_modules_not_the_package(module, name):
    package = importlib.import_module(module.rpartition(".")[0])
    assert name not in package.__all__
    assert hasattr(importlib.import_module(module), name)
    with pytest.raises(ImportError, match=name):
        exec(f"from {package.__name__} import {name}", {})


def test_an_unknown_name_says_where_the_public_names_are():
    import lit_rev.density

    with pytest.raises(AttributeError, match=r"'WeightNorm'.*lit_rev\.density\.__all__"):
        lit_rev.density.WeightNorm  # noqa: B018


@pytest.mark.parametrize("name", ["Adult", "German", "COMPAS"])
def test_the_former_data_module_names_are_gone(name):
    import lit_rev.data
    import lit_rev.data.tabular

    assert not hasattr(lit_rev.data, name)
    assert not hasattr(lit_rev.data.tabular, name)


@pytest.mark.slow  # a fresh Python process each
@pytest.mark.parametrize(
    "statement",
    [
        "import lit_rev.density",
        "import lit_rev.revnet",
        "import lit_rev.fair",
        "import lit_rev.ood",
        "from lit_rev.revnet import ReversibleBlock",
        "from lit_rev.density import Glow",
    ],
)
def test_a_plain_import_loads_neither_lightning_nor_torchmetrics_nor_matplotlib(statement):
    code = (
        f"{statement}\n"
        "import sys\n"
        "print(sorted(m for m in ('lightning', 'torchmetrics', 'matplotlib') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"{statement} loads {run.stdout.strip()}"

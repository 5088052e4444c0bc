"""The import rules of the developers' guide, read from the source with ast.

The slices (``lit_rev.density``, ``lit_rev.fair``, ``lit_rev.revnet``, ``lit_rev.data``) import
neither the command line (``lit_rev.cli``, ``lit_rev.__main__``) nor what is built on top of
them (``lit_rev.config``, ``lit_rev.commands``, ``lit_rev.evaluation``), nor each other; and
nothing in ``lit_rev/`` imports ``lit_rev.cli`` but ``lit_rev/__main__.py``: one CLI that
nothing imports.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lit_rev"
SLICES = ("density", "fair", "revnet", "data")
ABOVE_THE_SLICES = (
    "lit_rev.cli",
    "lit_rev.__main__",
    "lit_rev.config",
    "lit_rev.commands",
    "lit_rev.evaluation",
)


def module_name(path: Path) -> str:
    """``lit_rev/density/glow.py`` -> ``lit_rev.density.glow`` (a package: its ``__init__``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module that ``source`` (the text of ``module``) may import, anywhere in the file.

    ``from a import b`` counts as ``a`` and ``a.b`` (``b`` may be a submodule); relative
    imports are resolved; ``importlib.import_module("x")`` and ``__import__("x")`` with a
    literal name count too.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if name in ("import_module", "__import__") and literal:
                found.add(first.value)
    return found


def violations(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    module = module_name(path)
    imported = imported_modules(path.read_text(), module, path.name == "__init__.py")
    return sorted(
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for name in imported
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    )


def slice_files(name: str) -> list[Path]:
    return sorted((PACKAGE / name).rglob("*.py"))


@pytest.mark.parametrize("name", SLICES)
def test_a_slice_imports_neither_the_cli_nor_the_commands_nor_another_slice(name):
    others = tuple(f"lit_rev.{other}" for other in SLICES if other != name)
    files = slice_files(name)
    assert files, f"lit_rev/{name} has no Python files"
    found = [v for path in files for v in violations(path, ABOVE_THE_SLICES + others)]
    assert found == [], "\n".join(found)


def test_only_the_entry_point_imports_the_cli():
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__main__.py"]
    found = [v for path in files for v in violations(path, ("lit_rev.cli", "lit_rev.__main__"))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import lit_rev.cli",
        "from lit_rev.cli import LitRevCLI",
        "from lit_rev import cli",
        "from .. import cli",
        "from ..cli import main",
        "def load():\n    from lit_rev.config import instantiate",
        "from lit_rev.commands.analysis import main",
        "from lit_rev.evaluation.ood_benchmark import DensityEntry",
        "import importlib\nimportlib.import_module('lit_rev.cli')",
        "from lit_rev.fair import GRADModule",
        "from ..fair.results import headline",
    ],
)
def test_the_checker_sees_every_form_of_import(source):
    """Each form, put into lit_rev/density/analysis.py, is a violation."""
    path = PACKAGE / "density" / "analysis.py"
    imported = imported_modules(source, module_name(path))
    forbidden = (*ABOVE_THE_SLICES, "lit_rev.fair")
    assert any(n == bad or n.startswith(bad + ".") for n in imported for bad in forbidden), imported


def test_the_checker_resolves_a_package_s_relative_imports():
    assert "lit_rev.density.glow" in imported_modules(
        "from .glow import Glow", "lit_rev.density", is_package=True
    )
    assert "lit_rev.density.glow" in imported_modules(
        "from .glow import Glow", "lit_rev.density.module"
    )


#: Shared modules the slices may import: they import no slice and nothing above the slices.
SHARED = ("callbacks", "fit_checks", "inference", "ood", "options", "report")


@pytest.mark.parametrize("name", SHARED)
def test_a_shared_module_imports_no_slice(name):
    path = PACKAGE / name
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    assert files and all(f.exists() for f in files), f"lit_rev/{name} has no Python files"
    forbidden = ABOVE_THE_SLICES + tuple(f"lit_rev.{s}" for s in SLICES)
    found = [v for f in files for v in violations(f, forbidden)]
    assert found == [], "\n".join(found)


def test_no_command_imports_another_command():
    """Each command is a thin main over the library; what two commands share is library code."""
    files = sorted(p for p in (PACKAGE / "commands").glob("*.py") if p.name != "__init__.py")
    assert files, "lit_rev/commands has no command modules"
    found = []
    for path in files:
        own = module_name(path)
        found += [
            v
            for v in violations(path, ("lit_rev.commands",))
            if not (v.endswith(f" imports {own}") or f" imports {own}." in v)
        ]
    assert found == [], "\n".join(found)

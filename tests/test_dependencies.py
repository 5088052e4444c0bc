"""Every third-party module that lit_rev/ imports is a dependency declared in pyproject.toml."""

import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from tests.test_imports import PACKAGE

tomllib = pytest.importorskip("tomllib")
PYPROJECT = PACKAGE.parent / "pyproject.toml"
GUARDS = {"ImportError", "ModuleNotFoundError"}


def normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def requirement_name(requirement: str) -> str:
    return normalised(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))


def declared() -> tuple[set[str], set[str]]:
    """The distributions of ``[project.dependencies]``, and of the extras a user installs."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    required = {requirement_name(r) for r in project["dependencies"]}
    extras = {
        requirement_name(r)
        for extra, requirements in project.get("optional-dependencies", {}).items()
        if extra != "dev"
        for r in requirements
    }
    return required, extras


def literal_prefix(node: ast.expr) -> str | None:
    """``"x"`` of ``import_module("x")``, or the constant head of ``f"x.{y}"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return None


def imports(source: str) -> list[tuple[str, bool]]:
    """``(top-level module, guarded)`` of every absolute import; guarded: inside a ``try``
    that catches ImportError (an optional dependency)."""
    found = []

    def visit(node: ast.AST, guarded: bool) -> None:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func = getattr(node.func, "attr", getattr(node.func, "id", None))
            prefix = literal_prefix(node.args[0])
            if func in ("import_module", "__import__") and prefix:
                names = [prefix]
        found.extend((name.split(".")[0], guarded) for name in names)
        if isinstance(node, ast.Try):
            caught = {
                getattr(n, "id", None)
                for h in node.handlers
                for n in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type])
            }
            for child in node.body:
                visit(child, guarded or bool(caught & GUARDS))
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(source), False)
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    """The distributions that provide ``module`` here; its own name when none is installed."""
    provided = installed().get(module, [module])
    return {normalised(d) for d in provided}


def undeclared(package: Path) -> list[str]:
    required, extras = declared()
    problems = []
    for path in sorted(package.rglob("*.py")):
        for module, guarded in imports(path.read_text()):
            if module in sys.stdlib_module_names or module == "lit_rev":
                continue
            allowed = required | extras if guarded else required
            if not distributions(module) & allowed:
                where = path.relative_to(package.parent)
                kind = "optional import" if guarded else "import"
                problems.append(f"{where}: {kind} {module} ({sorted(distributions(module))})")
    return sorted(set(problems))


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    assert undeclared(PACKAGE) == [], "declare these in pyproject.toml [project.dependencies]"


def test_the_check_sees_plain_guarded_and_dynamic_imports(tmp_path):
    package = tmp_path / "lit_rev"
    package.mkdir()
    (package / "a.py").write_text(
        "import os\nimport torch\nimport tqdm\nfrom pandas import DataFrame\n"
        "try:\n    import fairlearn\nexcept ImportError:\n    fairlearn = None\n"
        "import importlib\nimportlib.import_module(f'normflows.{x}')\n"
    )
    found = undeclared(package)
    assert [p.split(": ", 1)[1].split(" (")[0] for p in found] == [
        "import normflows",  # an extra (bench), but not guarded
        "import pandas",  # installed with fairlearn, not declared by lit_rev
    ]

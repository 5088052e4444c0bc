"""Render the numbers in README.md and docs/*.md from the result files under results/.

    python -m lit_rev.commands.docs            # rewrite every marked block in place
    python -m lit_rev.commands.docs --check    # print the blocks that differ; exit 1 if any

A block is the text between ``<!-- result NAME ... -->`` and ``<!-- /result -->``
(:func:`lit_rev.result_files.render` says what the options mean). Make or refresh the files
with ``python -m lit_rev.commands.reproduce``.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from lit_rev.result_files import RESULTS_DIR, ResultError, render

#: The documents rendered, relative to the repository root.
DOCUMENTS = ("README.md", "docs/*.md")


def documents(root: Path) -> list[Path]:
    """README.md and every Markdown file under docs/."""
    found: list[Path] = []
    for pattern in DOCUMENTS:
        found += sorted(root.glob(pattern))
    return found


def rendered(root: Path) -> dict[Path, tuple[str, str]]:
    """Each document's text now and as rendered from the result files."""
    results = root / RESULTS_DIR
    out = {}
    for path in documents(root):
        text = path.read_text()
        out[path] = (text, render(text, results, root, where=str(path.relative_to(root))))
    return out


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_rev.commands.docs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a change")
    parser.add_argument("--root", default=".", help="the repository root")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    try:
        pairs = rendered(root)
    except ResultError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    changed = 0
    for path, (old, new) in pairs.items():
        if old == new:
            continue
        changed += 1
        name = str(path.relative_to(root))
        if args.check:
            diff = difflib.unified_diff(
                old.splitlines(),
                new.splitlines(),
                f"{name} (now)",
                f"{name} (rendered)",
                lineterm="",
            )
            print("\n".join(diff))
        else:
            path.write_text(new)
            print(f"rendered {name}")
    if args.check and changed:
        print(
            f"{changed} document(s) differ from their result files; "
            "run python -m lit_rev.commands.docs",
            file=sys.stderr,
        )
        return 1
    if not changed:
        print(f"{len(pairs)} documents up to date with {RESULTS_DIR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Result files: every published number as a JSON file that one command wrote.

A result file (``results/<name>.json``) holds an experiment's values and how they were made::

    {"name": ..., "title": ..., "kind": "quick" | "long",
     "values": {...},                      # what the docs render
     "tolerance": null | float,            # null: exact on the same versions and CPU
     "depends": ["lit_rev/fair", ...],     # the paths whose change makes the values stale
     "depends_digest": "<sha256>",         # of those paths' files when the values were made
     "provenance": {"command": ..., "git_commit": ..., "versions": {...}, "threads": ...,
                    "cpu": ..., "gpu": ..., "seeds": [...], "date": ..., "wall_s": ...}}

The docs quote a result between markers (:func:`render`)::

    <!-- result quickstart table=rows columns=set,n,auroc_bpd fmt=.3f -->
    ...rendered text...
    <!-- /result -->

``table=PATH`` renders a list of rows as a Markdown table, followed by one line naming the
command, commit, versions, threads and machine of the file (and saying so when the code it
depends on changed since); ``value=PATH`` renders one value inline; ``text=PATH`` a string as a
fenced block. ``PATH`` is a dotted path into ``values``; ``rows[set=mnist5k].auroc_bpd`` picks
the row whose ``set`` is ``mnist5k``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: Where result files live, relative to the repository root.
RESULTS_DIR = "results"

MARKER = re.compile(
    r"<!-- result (?P<name>[\w.-]+)(?P<options>[^>]*?)-->(?P<body>.*?)<!-- /result -->",
    re.DOTALL,
)
_SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


class ResultError(ValueError):
    """A marker or result file that cannot be rendered; the message names the place and the fix."""


# ---------------------------------------------------------------------------------------------
# Writing and reading
# ---------------------------------------------------------------------------------------------
def depends_digest(root: str | Path, paths: Iterable[str]) -> str:
    """SHA-256 over the names and contents of every file under ``paths`` (relative to ``root``).

    Content, not commits: a change regenerated in the same commit that makes it is not stale.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for entry in sorted(paths):
        base = root / entry
        if not base.exists():
            raise ResultError(f"depends: {entry} does not exist under {root}")
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root)
            if _SKIPPED_PARTS & set(rel.parts) or path.suffix == ".pyc":
                continue
            digest.update(rel.as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance(
    root: str | Path,
    command: Sequence[str] | str,
    threads: int,
    seeds: Sequence[int] = (),
    wall_s: float | None = None,
) -> dict[str, Any]:
    """How a result was made: command, commit, versions, threads, machine, seeds, date, time."""
    import lightning
    import torch

    from lit_rev import __version__

    root = Path(root)
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "command": command if isinstance(command, str) else shlex.join(command),
        "git_commit": _git(root, "rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "versions": {
            "lit_rev": __version__,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "python": platform.python_version(),
        },
        "threads": threads,
        "cpu": cpu_model(),
        "gpu": gpu,
        "seeds": list(seeds),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": None if wall_s is None else round(wall_s, 1),
    }


def write_result(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as strict JSON, atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """A result file; a missing or malformed one is a :class:`ResultError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"result file {path} does not exist; make it with reproduce")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ResultError(f"result file {path} is not valid JSON: {error}") from error
    for key in ("name", "values", "provenance", "depends"):
        if key not in document:
            raise ResultError(f"result file {path} has no {key!r}")
    return document


def is_stale(document: dict[str, Any], root: str | Path) -> bool:
    """Whether the files the result depends on changed since it was made."""
    return depends_digest(root, document["depends"]) != document.get("depends_digest")


# ---------------------------------------------------------------------------------------------
# Comparing a rerun with a file
# ---------------------------------------------------------------------------------------------
def same_setting(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two provenances share versions, CPU, GPU and threads (where runs are exact)."""
    keys = ("versions", "cpu", "gpu", "threads")
    return all(a.get(k) == b.get(k) for k in keys)


def differences(
    old: Any,
    new: Any,
    tolerance: float | None,
    where: str = "",
    volatile: Sequence[str] = (),
) -> list[str]:
    """Every place where ``new`` differs from ``old`` (numbers beyond ``tolerance``, if given).

    Keys starting with a ``volatile`` prefix (wall times) are not compared, at any depth.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        keys = set(old) | set(new)
        keys = {k for k in keys if not any(str(k).startswith(v) for v in volatile)}
        for key in sorted(keys, key=str):
            here = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                found.append(f"{here}: only in the {'new run' if key in new else 'file'}")
            else:
                found += differences(old[key], new[key], tolerance, here, volatile)
        return found
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: {len(old)} entries in the file, {len(new)} in the new run"]
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in differences(a, b, tolerance, f"{where}[{i}]", volatile)
        ]
    numbers = (int, float)
    if (
        tolerance is not None
        and isinstance(old, numbers)
        and isinstance(new, numbers)
        and not isinstance(old, bool)
    ):
        if math.isclose(old, new, rel_tol=0.0, abs_tol=tolerance):
            return []
        return [f"{where}: file {old!r}, new run {new!r} (tolerance {tolerance})"]
    if old != new:
        return [f"{where}: file {old!r}, new run {new!r}"]
    return []


# ---------------------------------------------------------------------------------------------
# Rendering docs from the files
# ---------------------------------------------------------------------------------------------
_STEP = re.compile(r"^(?P<key>[^\[\]]+)(?:\[(?P<field>[^=\]]+)=(?P<value>[^\]]+)\])?$")


def lookup(values: Any, path: str, name: str = "") -> Any:
    """The value at a dotted ``path`` (``rows[set=mnist5k].auroc``) in a result's ``values``."""
    current = values
    for step in path.split("."):
        match = _STEP.match(step)
        if match is None:
            raise ResultError(f"result {name}: {path!r} is not a path (step {step!r})")
        key = match["key"]
        if isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        elif isinstance(current, dict) and key in current:
            current = current[key]
        else:
            raise ResultError(f"result {name}: no field {key!r} in {path!r}")
        if match["field"] is not None:
            rows = [r for r in current if str(r.get(match["field"])) == match["value"]]
            if len(rows) != 1:
                raise ResultError(
                    f"result {name}: {len(rows)} rows with {match['field']}={match['value']} "
                    f"in {path!r} (need exactly one)"
                )
            current = rows[0]
    return current


def format_value(value: Any, fmt: str | None) -> str:
    """One cell: ``fmt`` applies to floats (counts stay whole); ``None`` shows as ``n/a``."""
    if value is None:
        return "n/a"
    if fmt and isinstance(value, float):
        return format(value, fmt)
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], fmt: str | None) -> str:
    """``rows`` as a Markdown table of ``columns`` (``key:Header`` renames a column)."""
    pairs = [c.split(":", 1) if ":" in c else (c, c) for c in columns]
    lines = [
        "| " + " | ".join(header for _, header in pairs) + " |",
        "|" + "|".join("---" for _ in pairs) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(k), fmt) for k, _ in pairs) + " |")
    return "\n".join(lines)


def provenance_line(document: dict[str, Any], stale: bool) -> str:
    """The line under a rendered table: what made it, where, and whether it is stale."""
    p = document["provenance"]
    v = p.get("versions", {})
    commit = (p.get("git_commit") or "unknown")[:7] + ("+changes" if p.get("git_dirty") else "")
    where = p.get("gpu") or p.get("cpu") or "unknown machine"
    threads = p.get("threads")
    wall = p.get("wall_s")
    parts = [
        f"`results/{document['name']}.json`",
        f"`{p.get('command')}`",
        f"commit {commit}",
        f"lit_rev {v.get('lit_rev')}, torch {v.get('torch')}, lightning {v.get('lightning')}",
        f"{threads} torch thread{'s' if threads != 1 else ''} on {where}",
        f"{p.get('date', '')[:10]}",
    ]
    if wall is not None:
        parts.append(f"{_duration(wall)} wall")
    line = "<sub>" + "; ".join(parts) + "</sub>"
    if stale:
        line += (
            f"\n\n**Stale:** code this result depends on changed after it was measured; "
            f"rerun `python -m lit_rev.commands.reproduce {document['name']}`."
        )
    return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def parse_options(text: str, where: str) -> dict[str, str]:
    """``key=value`` words of a marker."""
    options = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep:
            raise ResultError(f"{where}: marker option {word!r} is not key=value")
        options[key] = value
    return options


def render_block(
    name: str, options: dict[str, str], results: Path, root: Path, where: str, inline: bool
) -> str:
    """The text between one marker pair."""
    document = read_result(results / f"{name}.json")
    values = document["values"]
    fmt = options.get("fmt")
    kinds = [k for k in ("table", "value", "text") if k in options]
    if len(kinds) != 1:
        raise ResultError(f"{where}: a marker needs exactly one of table=, value=, text=")
    kind = kinds[0]
    target = lookup(values, options[kind], name)
    if kind == "value":
        return format_value(target, fmt)
    stale = is_stale(document, root)
    if kind == "text":
        body = f"```\n{str(target).rstrip()}\n```"
    else:
        if not isinstance(target, list) or not all(isinstance(r, dict) for r in target):
            raise ResultError(f"{where}: {options[kind]!r} of result {name} is not a list of rows")
        columns = options.get("columns", "").split(",") if options.get("columns") else None
        if columns is None:
            columns = list(dict.fromkeys(k for row in target for k in row))
        body = markdown_table(target, columns, fmt)
    text = f"{body}\n\n{provenance_line(document, stale)}"
    return text if inline else f"\n{text}\n"


def render(text: str, results: str | Path, root: str | Path, where: str = "") -> str:
    """``text`` with every marker's body rendered from its result file."""
    results, root = Path(results), Path(root)

    def one(match: re.Match) -> str:
        line = text.count("\n", 0, match.start()) + 1
        here = f"{where}:{line}"
        options = parse_options(match["options"], here)
        inline = "value" in options
        body = render_block(match["name"], options, results, root, here, inline)
        return f"<!-- result {match['name']}{match['options']}-->{body}<!-- /result -->"

    return MARKER.sub(one, text)


def markers(text: str) -> list[tuple[str, dict[str, str]]]:
    """The (result name, options) of every marker in ``text``."""
    return [(m["name"], parse_options(m["options"], "")) for m in MARKER.finditer(text)]

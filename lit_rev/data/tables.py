"""Generic table reading and encoding, shared by every tabular data set.

Nothing here knows a particular data set: the files, columns, parsers, protected attributes
and labels of Adult, German credit and COMPAS are in :mod:`lit_rev.data.tabular_schemas`.

A :class:`Table` keeps every column as a numpy array of strings plus the line number each row
came from, so every error can name the file and the line. :func:`delimited_lines` and
:func:`csv_records` split a raw text into rows, checking each row's field count;
:class:`Encoder` is fitted on the training split only: categories for one-hot columns and
mean/std for numeric columns. :class:`RawFile` names a published file and its SHA-256, and
:func:`read_raw_text` reads it (the gzipped copy shipped in the package, or a directory's,
optionally downloaded first), checksummed on every read.
"""

from __future__ import annotations

import csv
import io
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lit_rev.data.files import DataFileError, shipped_gzip, verified_path
from lit_rev.options import check_choice

# What a category absent from the training split does when encoded: an error, or all zeros.
UnknownCategories = Literal["error", "ignore"]


@dataclass(frozen=True)
class RawFile:
    """A raw data file as published: its name, where to download it, and its SHA-256."""

    name: str
    url: str
    sha256: str  # of the raw file, as published


def read_raw_text(raw: RawFile, root: str | None = None, download: bool = False) -> str:
    """The text of ``raw``, checksummed: the shipped gzip copy, or the file under ``root``.

    Args:
        raw: the file to read.
        root: read ``<root>/<raw.name>`` instead of the copy shipped in the package.
        download: fetch a file missing under ``root`` from ``raw.url`` first.

    Raises:
        DataFileError: naming the file, where it is missing, fails its checksum or is not
            UTF-8 text.
    """
    if root is None:
        data = shipped_gzip(raw.name + ".gz", raw.sha256)
        source = f"{raw.name} (shipped copy)"
    else:
        path = Path(root) / raw.name
        if not path.is_file() and download:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + ".part")
            urllib.request.urlretrieve(raw.url, partial)
            partial.replace(path)
        data = verified_path(path, raw.sha256).read_bytes()
        source = str(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{source}: not UTF-8 text ({err})") from None


@dataclass
class Table:
    """Rows of one file as string columns; ``lines[i]`` is the 1-based line row ``i`` came from."""

    source: str
    columns: dict[str, np.ndarray]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def select(self, keep: np.ndarray) -> Table:
        """The rows picked by ``keep`` (a boolean mask or indices), with their line numbers."""
        return Table(self.source, {k: v[keep] for k, v in self.columns.items()}, self.lines[keep])

    def floats(self, name: str) -> np.ndarray:
        """Column ``name`` as float64; a value that is not a number names its file and line."""
        values = self.columns[name]
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except ValueError:
                raise DataFileError(
                    f"{self.source} line {self.lines[i]}: column {name!r} should be a number, "
                    f"got {str(v)!r}"
                ) from None
        return out


def concat_tables(source: str, tables: Sequence[Table]) -> Table:
    """The rows of ``tables`` one after the other, as one table named ``source``.

    Every table must have the same columns; the line numbers stay those of each row's own
    file (the first table's rows come first).
    """
    names = list(tables[0].columns)
    for table in tables[1:]:
        if list(table.columns) != names:
            raise ValueError(
                f"concat_tables: {table.source} has columns {list(table.columns)}, "
                f"{tables[0].source} has {names}; only tables with the same columns concatenate"
            )
    return Table(
        source,
        {n: np.concatenate([t.columns[n] for t in tables]) for n in names},
        np.concatenate([t.lines for t in tables]),
    )


def table_of_rows(
    source: str, names: Sequence[str], rows: list[list[str]], lines: list[int]
) -> Table:
    """A :class:`Table` of ``rows`` (each one string per name of ``names``) read from ``lines``.

    Raises:
        DataFileError: naming ``source``, where there are no rows.
    """
    if not rows:
        raise DataFileError(f"{source}: no rows found")
    return _table(source, names, rows, lines)


def _table(source: str, names: Sequence[str], rows: list[list[str]], lines: list[int]) -> Table:
    matrix = np.array(rows, dtype=object).reshape(len(rows), len(names))
    columns = {n: matrix[:, j].astype(str) for j, n in enumerate(names)}
    return Table(source, columns, np.asarray(lines, dtype=np.int64))


def delimited_lines(
    text: str,
    source: str,
    n_fields: int,
    separator: Literal[",", " "],
    skip: Callable[[str], bool] = lambda line: False,
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every line of ``text`` that is neither blank nor skipped.

    Args:
        text: the file's text.
        source: the file's name, for error messages.
        n_fields: the number of fields every row must have.
        separator: ``","`` (fields stripped of surrounding spaces) or ``" "`` (any run of
            whitespace separates fields).
        skip: lines for which it is true are not rows (a header or a junk line).

    Raises:
        DataFileError: naming the file and the line, where a row has the wrong field count.
    """
    kind = "comma-separated" if separator == "," else "space-separated"
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or skip(line):
            continue
        fields = [f.strip() for f in line.split(",")] if separator == "," else line.split()
        if len(fields) != n_fields:
            raise DataFileError(
                f"{source} line {number}: expected {n_fields} {kind} "
                f"fields, got {len(fields)}: {line[:80]!r}"
            )
        yield number, fields


def csv_records(text: str, source: str, needed: Sequence[str]) -> Table:
    """The ``needed`` columns of a CSV file with a header line, as a :class:`Table`.

    Where the header repeats a name, the first column of that name is read.

    Raises:
        DataFileError: naming the file (and line), where it is empty, lacks a needed column,
            or a row's field count differs from the header's.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{source}: empty file") from None
    index: dict[str, int] = {}
    for j, name in enumerate(header):
        index.setdefault(name, j)
    missing = [n for n in needed if n not in index]
    if missing:
        raise DataFileError(f"{source}: missing columns {missing}")
    rows, lines = [], []
    for number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != len(header):
            raise DataFileError(
                f"{source} line {number}: expected {len(header)} comma-separated fields, "
                f"got {len(fields)}"
            )
        rows.append([fields[index[n]] for n in needed])
        lines.append(number)
    return _table(source, needed, rows, lines)


@dataclass
class Encoder:
    """Numeric columns standardised and categorical columns one-hot encoded, fitted on one table.

    ``unknown``: what a category never seen in the fitted table does at transform time:
    ``"error"`` (a :class:`DataFileError` naming the file, line, column and value) or
    ``"ignore"`` (an all-zero one-hot row).
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    unknown: UnknownCategories = "error"
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("unknown", self.unknown, UnknownCategories)

    def fit(self, table: Table) -> Encoder:
        """Learn the means, standard deviations and categories of ``table``; returns ``self``."""
        check_choice("unknown", self.unknown, UnknownCategories)  # may have been reassigned
        for name in self.numeric:
            values = table.floats(name)
            self.means[name] = float(values.mean())
            self.stds[name] = float(values.std()) or 1.0
        for name in self.categorical:
            self.categories[name] = sorted(set(table.columns[name].tolist()))
        return self

    @property
    def feature_names(self) -> list[str]:
        """Name of every output column: numeric names, then ``column=category`` one-hots."""
        return list(self.numeric) + [
            f"{name}={c}" for name in self.categorical for c in self.categories[name]
        ]

    def transform(self, table: Table) -> np.ndarray:
        """Encode ``table`` as float32 ``(rows, features)`` with the fitted statistics."""
        blocks = [((table.floats(n) - self.means[n]) / self.stds[n])[:, None] for n in self.numeric]
        for name in self.categorical:
            cats = self.categories[name]
            values = table.columns[name]
            where = {c: j for j, c in enumerate(cats)}
            codes = np.array([where.get(v, -1) for v in values.tolist()], dtype=np.int64)
            unseen = codes < 0
            if unseen.any() and self.unknown == "error":
                i = int(np.argmax(unseen))
                raise DataFileError(
                    f"{table.source} line {table.lines[i]}: column {name!r} has category "
                    f"{str(values[i])!r} not seen in the training split (known: {cats}); "
                    "pass unknown_categories='ignore' to encode it as all zeros"
                )
            one_hot = np.zeros((len(values), len(cats)))
            one_hot[np.flatnonzero(~unseen), codes[~unseen]] = 1.0
            blocks.append(one_hot)
        if not blocks:
            return np.zeros((len(table), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)

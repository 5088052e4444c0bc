"""Parsing the raw tabular files (Adult, German credit, COMPAS) and encoding their columns.

Each file is parsed into columns of strings, which are then encoded as numbers.

A :class:`Table` keeps every column as a numpy array of strings plus the line number each row
came from, so every error can name the file and the line. :class:`Encoder` is fitted on the
training split only: categories for one-hot columns and mean/std for numeric columns.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lit_rev.data.files import DataFileError
from lit_rev.options import check_choice

# What a category absent from the training split does when encoded: an error, or all zeros.
UnknownCategories = Literal["error", "ignore"]

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")

# UCI's codes: A11..A203; the names follow german.doc.
GERMAN_COLUMNS = (
    "checking",
    "duration",
    "credit_history",
    "purpose",
    "amount",
    "savings",
    "employment",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installments",
    "housing",
    "existing_credits",
    "job",
    "dependents",
    "telephone",
    "foreign_worker",
    "credit",
)
GERMAN_NUMERIC = (
    "duration",
    "amount",
    "installment_rate",
    "residence_since",
    "age",
    "existing_credits",
    "dependents",
)
GERMAN_MALE = ("A91", "A93", "A94")
GERMAN_FEMALE = ("A92", "A95")

COMPAS_NUMERIC = ("age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count")
COMPAS_CATEGORICAL = ("c_charge_degree", "sex", "race")
COMPAS_NEEDED = (
    COMPAS_NUMERIC
    + COMPAS_CATEGORICAL
    + ("days_b_screening_arrest", "is_recid", "score_text", "two_year_recid")
)


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


def _table(source: str, names: tuple[str, ...], rows: list[list[str]], lines: list[int]) -> Table:
    matrix = np.array(rows, dtype=object).reshape(len(rows), len(names))
    columns = {n: matrix[:, j].astype(str) for j, n in enumerate(names)}
    return Table(source, columns, np.asarray(lines, dtype=np.int64))


def parse_adult(text: str, source: str) -> Table:
    """UCI Adult, train (``adult.data``) or test (``adult.test``) file.

    Quirks handled: the test file's junk first line (``|1x3 Cross validator``), its labels
    ending in ``.`` (``>50K.``), blank lines, spaces after commas. Rows with a missing value
    (``?``) are dropped, as in the literature (45,222 rows remain of 48,842).
    """
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("|"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(ADULT_COLUMNS):
            raise DataFileError(
                f"{source} line {number}: expected {len(ADULT_COLUMNS)} comma-separated "
                f"fields, got {len(fields)}: {line[:80]!r}"
            )
        if "?" in fields:
            continue
        fields[-1] = fields[-1].rstrip(".")
        if fields[-1] not in ("<=50K", ">50K"):
            raise DataFileError(
                f"{source} line {number}: income label should be <=50K or >50K, got {fields[-1]!r}"
            )
        rows.append(fields)
        lines.append(number)
    if not rows:
        raise DataFileError(f"{source}: no rows found")
    return _table(source, ADULT_COLUMNS, rows, lines)


def parse_german(text: str, source: str) -> Table:
    """UCI Statlog German credit (``german.data``).

    Each line holds 20 space-separated attributes and the label (1 good, 2 bad). Adds ``sex``
    from ``personal_status`` (A91/A93/A94 male, A92/A95 female).
    """
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(GERMAN_COLUMNS):
            raise DataFileError(
                f"{source} line {number}: expected {len(GERMAN_COLUMNS)} space-separated "
                f"fields, got {len(fields)}: {line[:80]!r}"
            )
        if fields[-1] not in ("1", "2"):
            raise DataFileError(
                f"{source} line {number}: credit label should be 1 (good) or 2 (bad), "
                f"got {fields[-1]!r}"
            )
        if fields[8] not in GERMAN_MALE + GERMAN_FEMALE:
            raise DataFileError(
                f"{source} line {number}: unknown personal_status code {fields[8]!r}"
            )
        rows.append(fields)
        lines.append(number)
    if not rows:
        raise DataFileError(f"{source}: no rows found")
    table = _table(source, GERMAN_COLUMNS, rows, lines)
    table.columns["sex"] = np.where(
        np.isin(table.columns["personal_status"], GERMAN_FEMALE), "female", "male"
    )
    return table


def parse_compas(text: str, source: str) -> Table:
    """ProPublica ``compas-scores-two-years.csv``, with the filters of their analysis notebook.

    The filters keep ``days_b_screening_arrest`` within ±30, ``is_recid != -1``,
    ``c_charge_degree != 'O'`` and ``score_text != 'N/A'`` (6,172 of 7,214 rows remain).
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{source}: empty file") from None
    # The file repeats some column names (decile_score, priors_count); the first one counts.
    index = {}
    for j, name in enumerate(header):
        index.setdefault(name, j)
    missing = [n for n in COMPAS_NEEDED if n not in index]
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
        rows.append([fields[index[n]] for n in COMPAS_NEEDED])
        lines.append(number)
    table = _table(source, COMPAS_NEEDED, rows, lines)
    days = table.columns["days_b_screening_arrest"]
    has_days = days != ""
    days_ok = np.zeros(len(table), dtype=bool)
    days_ok[has_days] = np.abs(table.select(has_days).floats("days_b_screening_arrest")) <= 30
    keep = (
        days_ok
        & (table.columns["is_recid"] != "-1")
        & (table.columns["c_charge_degree"] != "O")
        & (table.columns["score_text"] != "N/A")
    )
    table = table.select(keep)
    bad = ~np.isin(table.columns["two_year_recid"], ("0", "1"))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(
            f"{source} line {table.lines[i]}: two_year_recid should be 0 or 1, "
            f"got {str(table.columns['two_year_recid'][i])!r}"
        )
    return table


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

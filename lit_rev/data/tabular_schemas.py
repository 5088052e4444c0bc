"""The tabular fairness data sets, one :class:`TabularSchema` each: ADULT, GERMAN, COMPAS.

A schema holds everything particular to its set: the raw files as published, the parser with
the set's quirks and filters, the numeric and categorical input columns, the protected
attributes and the label. Each set's section below is all there is to know about it; the
generic reading and encoding is in :mod:`lit_rev.data.tables`, and the DataModules that
serve the sets are in :mod:`lit_rev.data.tabular`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lit_rev.data.files import DataFileError
from lit_rev.data.tables import (
    RawFile,
    Table,
    concat_tables,
    csv_records,
    delimited_lines,
    table_of_rows,
)


@dataclass(frozen=True)
class Attribute:
    """A protected attribute, described once for every set that has it.

    Attributes:
        groups: the group names; a row's code is the index of its group.
        group_of: reads the code of every row of a table.
        columns: the input columns that carry the attribute (left out of ``x`` by default).
    """

    groups: tuple[str, ...]
    group_of: Callable[[Table], np.ndarray]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TabularSchema:
    """One tabular data set: its files, parser, input columns, protected attributes and label.

    Attributes:
        name: the set's name.
        files: the raw files as published; each is checksummed on every load.
        parse: the texts of the raw files (by file name) to ``(training table, test table)``,
            the test table ``None`` where the set has no published test split (the DataModule
            then holds out a seeded part of the training table).
        numeric: the columns standardised into ``x``.
        categorical: the columns one-hot encoded into ``x``.
        attributes: the protected attributes by name; the first is the default.
        label: the binary label (0 or 1) of every row of a table.
    """

    name: str
    files: tuple[RawFile, ...]
    parse: Callable[[Mapping[str, str]], tuple[Table, Table | None]]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    attributes: Mapping[str, Attribute]
    label: Callable[[Table], np.ndarray]


def _lookup(
    column: str, groups: Sequence[str], other: int | None = None
) -> Callable[[Table], np.ndarray]:
    """Rows whose ``column`` equals ``groups[k]`` get code ``k``; others ``other`` (or an error)."""

    def group_of(table: Table) -> np.ndarray:
        values = table.columns[column]
        codes = np.full(len(values), -1 if other is None else other, dtype=np.int64)
        for k, g in enumerate(groups):
            codes[values == g] = k
        if (codes < 0).any():
            i = int(np.argmax(codes < 0))
            raise DataFileError(
                f"{table.source} line {table.lines[i]}: {column!r} value {str(values[i])!r} "
                f"is none of {list(groups)}"
            )
        return codes

    return group_of


def _bins(column: str, edges: Sequence[float]) -> Callable[[Table], np.ndarray]:
    """Code ``k`` for values in ``[edges[k-1], edges[k])`` (``digitize`` with right-open bins)."""

    def group_of(table: Table) -> np.ndarray:
        return np.digitize(table.floats(column), edges).astype(np.int64)

    return group_of


def _equals(column: str, value: str) -> Callable[[Table], np.ndarray]:
    """Code 1 where ``column`` is ``value``, 0 elsewhere (a label, or a two-group attribute)."""

    def code_of(table: Table) -> np.ndarray:
        return (table.columns[column] == value).astype(np.int64)

    return code_of


# --- Adult (UCI) ---------------------------------------------------------------------------

ADULT_FILES = (
    RawFile(
        "adult.data",
        "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.data",
        "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    ),
    RawFile(
        "adult.test",
        "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/adult.test",
        "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    ),
)
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
ADULT_CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
ADULT_RACES = ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other")


def _is_junk_line(line: str) -> bool:
    """The test file's first line, ``|1x3 Cross validator``."""
    return line.startswith("|")


def parse_adult(text: str, source: str, drop_missing: bool = True) -> Table:
    """UCI Adult, train (``adult.data``) or test (``adult.test``) file.

    Quirks handled: the test file's junk first line (``|1x3 Cross validator``), its labels
    ending in ``.`` (``>50K.``), blank lines, spaces after commas. Rows with a missing value
    (``?``) are dropped, as in the literature (45,222 rows remain of 48,842), unless
    ``drop_missing`` is false (AIF360's coarse setting reads no column that has any).
    """
    rows, lines = [], []
    rows_of = delimited_lines(text, source, len(ADULT_COLUMNS), ",", skip=_is_junk_line)
    for number, fields in rows_of:
        if drop_missing and "?" in fields:
            continue
        fields[-1] = fields[-1].rstrip(".")
        if fields[-1] not in ("<=50K", ">50K"):
            raise DataFileError(
                f"{source} line {number}: income label should be <=50K or >50K, got {fields[-1]!r}"
            )
        rows.append(fields)
        lines.append(number)
    return table_of_rows(source, ADULT_COLUMNS, rows, lines)


def _adult_splits(texts: Mapping[str, str]) -> tuple[Table, Table]:
    """The published split: ``adult.data`` for training, ``adult.test`` for testing."""
    return (
        parse_adult(texts["adult.data"], "adult.data"),
        parse_adult(texts["adult.test"], "adult.test"),
    )


#: UCI Adult: label ``income > 50K``; ``fnlwgt`` is not an input.
ADULT = TabularSchema(
    name="Adult",
    files=ADULT_FILES,
    parse=_adult_splits,
    numeric=ADULT_NUMERIC,
    categorical=ADULT_CATEGORICAL,
    attributes={
        "sex": Attribute(("Male", "Female"), _lookup("sex", ("Male", "Female")), ("sex",)),
        "race": Attribute(ADULT_RACES, _lookup("race", ADULT_RACES), ("race",)),
        "nonwhite": Attribute(
            ("White", "non-White"), _lookup("race", ("White",), other=1), ("race",)
        ),
        "age": Attribute(("<25", "25-44", "45-64", "65+"), _bins("age", (25, 45, 65)), ("age",)),
    },
    label=_equals("income", ">50K"),
)


# --- Adult in AIF360's coarse setting ------------------------------------------------------
#
# AIF360's ``load_preproc_data_adult`` (used by its adversarial-debiasing demo): 18 features,
# age by decade (10, ..., 60, >=70), education years binned (<6, 6, ..., 12, >12), sex and
# race (White or not) as 0/1 columns; both published files pooled, no row dropped (none of
# these columns has a missing value: 48,842 rows), then a seeded 70/30 split.

ADULT_AIF360_NUMERIC = ("sex_male", "race_white")
ADULT_AIF360_CATEGORICAL = ("age_decade", "education_years")


def _age_decade(age: float) -> str:
    """AIF360's ``age // 10 * 10``, with 70 and above one bin (``>=70``)."""
    decade = int(age) // 10 * 10
    return ">=70" if decade >= 70 else str(decade)


def _education_years(years: float) -> str:
    """AIF360's education bins: ``<6`` (5 years or fewer), 6 to 12 each, ``>12``."""
    years = int(years)
    return "<6" if years <= 5 else ">12" if years >= 13 else str(years)


def coarse_adult_columns(table: Table) -> Table:
    """``table`` with AIF360's coarse columns added; the original columns are kept.

    The added columns: ``age_decade``, ``education_years``, ``sex_male``, ``race_white``.
    """
    table.columns["age_decade"] = np.array([_age_decade(a) for a in table.floats("age")])
    table.columns["education_years"] = np.array(
        [_education_years(e) for e in table.floats("education-num")]
    )
    table.columns["sex_male"] = np.where(table.columns["sex"] == "Male", "1", "0")
    table.columns["race_white"] = np.where(table.columns["race"] == "White", "1", "0")
    return table


def _adult_aif360_pooled(texts: Mapping[str, str]) -> tuple[Table, None]:
    """Both published files as one table (AIF360 splits the pool), every row kept."""
    train = parse_adult(texts["adult.data"], "adult.data", drop_missing=False)
    test = parse_adult(texts["adult.test"], "adult.test", drop_missing=False)
    return coarse_adult_columns(concat_tables("adult.data+adult.test", [train, test])), None


#: UCI Adult as AIF360's ``load_preproc_data_adult`` prepares it (18 features); label
#: ``income > 50K``. ``sex`` and ``race`` (White, non-White) are carried by their 0/1 columns.
ADULT_AIF360 = TabularSchema(
    name="Adult (AIF360 coarse)",
    files=ADULT_FILES,
    parse=_adult_aif360_pooled,
    numeric=ADULT_AIF360_NUMERIC,
    categorical=ADULT_AIF360_CATEGORICAL,
    attributes={
        "sex": Attribute(("Male", "Female"), _lookup("sex", ("Male", "Female")), ("sex_male",)),
        "race": Attribute(
            ("White", "non-White"), _lookup("race", ("White",), other=1), ("race_white",)
        ),
    },
    label=_equals("income", ">50K"),
)


# --- German credit (UCI Statlog) -----------------------------------------------------------

GERMAN_FILE = RawFile(
    "german.data",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/german/german.data",
    "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
)
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
GERMAN_CATEGORICAL = tuple(c for c in GERMAN_COLUMNS[:-1] if c not in GERMAN_NUMERIC)
GERMAN_MALE = ("A91", "A93", "A94")
GERMAN_FEMALE = ("A92", "A95")


def parse_german(text: str, source: str) -> Table:
    """UCI Statlog German credit (``german.data``).

    Each line holds 20 space-separated attributes and the label (1 good, 2 bad). Adds ``sex``
    from ``personal_status`` (A91/A93/A94 male, A92/A95 female).
    """
    rows, lines = [], []
    for number, fields in delimited_lines(text, source, len(GERMAN_COLUMNS), " "):
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
    table = table_of_rows(source, GERMAN_COLUMNS, rows, lines)
    table.columns["sex"] = np.where(
        np.isin(table.columns["personal_status"], GERMAN_FEMALE), "female", "male"
    )
    return table


def _german_table(texts: Mapping[str, str]) -> tuple[Table, None]:
    """The one file; it has no published test split."""
    return parse_german(texts[GERMAN_FILE.name], GERMAN_FILE.name), None


def _older_than_25(table: Table) -> np.ndarray:
    """Code 1 for ages above 25, 0 for 25 and younger."""
    return (table.floats("age") > 25).astype(np.int64)


#: UCI Statlog German credit: 1,000 rows, label good credit (the file's code 1; bad is 2).
#: ``sex`` is read from ``personal_status``, which therefore carries it.
GERMAN = TabularSchema(
    name="German",
    files=(GERMAN_FILE,),
    parse=_german_table,
    numeric=GERMAN_NUMERIC,
    categorical=GERMAN_CATEGORICAL,
    attributes={
        "age": Attribute(("<=25", ">25"), _older_than_25, ("age",)),
        "sex": Attribute(
            ("male", "female"), _lookup("sex", ("male", "female")), ("personal_status",)
        ),
    },
    label=_equals("credit", "1"),
)


# --- COMPAS (ProPublica) -------------------------------------------------------------------

COMPAS_FILE = RawFile(
    "compas-scores-two-years.csv",
    "https://raw.githubusercontent.com/propublica/compas-analysis/master/compas-scores-two-years.csv",
    "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
)
COMPAS_NUMERIC = ("age", "juv_fel_count", "juv_misd_count", "juv_other_count", "priors_count")
COMPAS_CATEGORICAL = ("c_charge_degree", "sex", "race")
COMPAS_NEEDED = (
    COMPAS_NUMERIC
    + COMPAS_CATEGORICAL
    + ("days_b_screening_arrest", "is_recid", "score_text", "two_year_recid")
)
COMPAS_RACES = ("African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American")


def parse_compas(text: str, source: str) -> Table:
    """ProPublica ``compas-scores-two-years.csv``, with the filters of their analysis notebook.

    The filters keep ``days_b_screening_arrest`` within ±30, ``is_recid != -1``,
    ``c_charge_degree != 'O'`` and ``score_text != 'N/A'`` (6,172 of 7,214 rows remain).
    The file repeats some column names (decile_score, priors_count); the first one counts.
    """
    table = csv_records(text, source, COMPAS_NEEDED)
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


def _compas_table(texts: Mapping[str, str]) -> tuple[Table, None]:
    """The one file; it has no published test split."""
    return parse_compas(texts[COMPAS_FILE.name], COMPAS_FILE.name), None


def _two_year_recid(table: Table) -> np.ndarray:
    """1 where the person re-offended within two years."""
    return table.columns["two_year_recid"].astype(np.int64)


#: ProPublica COMPAS two-year recidivism: label ``two_year_recid``; the inputs never include
#: the COMPAS scores.
COMPAS = TabularSchema(
    name="COMPAS",
    files=(COMPAS_FILE,),
    parse=_compas_table,
    numeric=COMPAS_NUMERIC,
    categorical=COMPAS_CATEGORICAL,
    attributes={
        "race": Attribute(
            ("other", "African-American"), _equals("race", "African-American"), ("race",)
        ),
        "race_all": Attribute(COMPAS_RACES, _lookup("race", COMPAS_RACES), ("race",)),
        "sex": Attribute(("Male", "Female"), _lookup("sex", ("Male", "Female")), ("sex",)),
    },
    label=_two_year_recid,
)

"""Tabular fairness data sets as DataModules: ``Adult``, ``German``, ``COMPAS``.

Every batch is ``(x, y, s)``: ``x`` float32 ``(B, D)`` standardised numeric and one-hot
categorical features, ``y`` float32 ``(B,)`` the binary label, ``s`` int64 ``(B, A)`` one
column per protected attribute (group codes ``0..K-1``; names in ``protected_groups``).

By default the columns that carry a protected attribute are left out of ``x``
(``protected_in_inputs=False``): sex, or the raw age when age bins are protected. With them
in, ``consistency_columns`` lists the inputs that are *not* protected, which is where the
consistency metric looks for neighbours.

The raw files ship gzipped inside the package and are checked against the public sources'
SHA-256 on every load. ``root=dir`` reads the raw files from ``dir`` instead (same check),
and ``download=True`` first fetches missing ones from UCI / ProPublica into ``root``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lit_rev.data.files import DataFileError, shipped_gzip, verified_path
from lit_rev.data.tabular_parsing import (
    ADULT_NUMERIC,
    COMPAS_CATEGORICAL,
    COMPAS_NUMERIC,
    GERMAN_COLUMNS,
    GERMAN_NUMERIC,
    Encoder,
    Table,
    UnknownCategories,
    parse_adult,
    parse_compas,
    parse_german,
)
from lit_rev.options import check_choice


@dataclass(frozen=True)
class RawFile:
    """A raw data file as published: its name, where to download it, and its SHA-256."""

    name: str
    url: str
    sha256: str  # of the raw file, as published


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
GERMAN_FILE = RawFile(
    "german.data",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/statlog/german/german.data",
    "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
)
COMPAS_FILE = RawFile(
    "compas-scores-two-years.csv",
    "https://raw.githubusercontent.com/propublica/compas-analysis/master/compas-scores-two-years.csv",
    "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
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
    return lambda table: np.digitize(table.floats(column), edges).astype(np.int64)


class TabularTensors(Dataset):
    """``(x, y, s)`` in memory; ``__getitems__`` hands out whole batches (no per-row collate)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor):
        if not (len(x) == len(y) == len(s)):
            raise ValueError("x, y and s must have the same number of rows")
        self.x = x
        self.y = y
        self.s = s

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], self.s[i]

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.x[index], self.y[index], self.s[index]


_PARSED: dict[tuple, tuple[Table, Table]] = {}


def _batch_as_is(batch):
    return batch


class TabularDataModule(LightningDataModule):
    """Base of the tabular sets. Subclasses name their files, columns and protected attributes.

    Args:
        protected: names of the protected attributes (see each subclass's ``attributes``).
        protected_in_inputs: keep the columns that carry them in ``x`` (default: drop them).
        batch_size, test_batch_size: loader batch sizes.
        val_fraction: part of the training split held out for validation (seeded).
        test_fraction: for sets without a published test file, the part held out (seeded).
        max_train, max_test: optional seeded caps for quick runs.
        unknown_categories: ``error`` or ``ignore`` for categories absent from the training split.
        root: read the raw files from this directory instead of the shipped copies.
        download: fetch missing raw files into ``root`` from the original source.
        seed: seeds the validation split, the train/test split and the caps.
    """

    raw_files: tuple[RawFile, ...] = ()
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    attributes: ClassVar[dict[str, Attribute]] = {}

    def __init__(
        self,
        protected: list[str] | None = None,
        protected_in_inputs: bool = False,
        batch_size: int = 256,
        test_batch_size: int = 4096,
        val_fraction: float = 0.1,
        test_fraction: float = 0.3,
        max_train: int | None = None,
        max_test: int | None = None,
        unknown_categories: UnknownCategories = "error",
        root: str | None = None,
        download: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        protected = list(protected) if protected is not None else [next(iter(self.attributes))]
        unknown = [p for p in protected if p not in self.attributes]
        if unknown or not protected:
            raise ValueError(
                f"{type(self).__name__}: unknown protected attribute(s) {unknown}; "
                f"choose from {list(self.attributes)}"
            )
        if not 0.0 <= val_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
            raise ValueError("need 0 <= val_fraction < 1 and 0 < test_fraction < 1")
        if download and root is None:
            raise ValueError("download=True needs root: the directory to download into")
        check_choice("unknown_categories", unknown_categories, UnknownCategories)
        self.protected = protected
        self.protected_in_inputs = protected_in_inputs
        self.batch_size = batch_size
        self.test_batch_size = test_batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.max_train = max_train
        self.max_test = max_test
        self.unknown_categories = unknown_categories
        self.root = root
        self.download = download
        self.num_workers = num_workers
        self.seed = seed
        self.train_set = self.val_set = self.test_set = None
        self.encoder: Encoder | None = None
        self.consistency_columns: list[int] | None = None

    # --- what subclasses provide -------------------------------------------------------------
    def read_splits(self, texts: dict[str, str]) -> tuple[Table, Table]:
        """(training table, test table) from the raw files' texts."""
        raise NotImplementedError

    def label(self, table: Table) -> np.ndarray:
        """The binary label (0 or 1) of every row of ``table``."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------------
    @property
    def protected_groups(self) -> list[tuple[str, ...]]:
        """The group names of each protected attribute, in the order of ``s``'s columns."""
        return [self.attributes[p].groups for p in self.protected]

    @property
    def protected_classes(self) -> list[int]:
        """The number of groups of each protected attribute (a model's output sizes)."""
        return [len(g) for g in self.protected_groups]

    @property
    def input_dim(self) -> int:
        """Width of ``x`` after encoding; reads and encodes the data if not done yet."""
        self.setup()
        return int(self.train_set.x.shape[1])

    @property
    def feature_names(self) -> list[str]:
        """Name of every column of ``x`` (``column=category`` for one-hot columns)."""
        self.setup()
        return self.encoder.feature_names

    def raw_text(self, raw: RawFile) -> str:
        """The text of ``raw``, checksummed: the shipped copy, or the file under ``root``.

        With ``download=True`` a file missing under ``root`` is fetched first.
        """
        if self.root is None:
            data = shipped_gzip(raw.name + ".gz", raw.sha256)
            source = f"{raw.name} (shipped copy)"
        else:
            path = Path(self.root) / raw.name
            if not path.is_file() and self.download:
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

    def _seeded_mask(self, n: int, fraction: float, salt: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed * 1000 + salt)
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: round(n * fraction)]] = True
        return mask

    def _cap(self, table: Table, cap: int | None, salt: int) -> Table:
        if cap is None or len(table) <= cap:
            return table
        rng = np.random.default_rng(self.seed * 1000 + salt)
        return table.select(np.sort(rng.permutation(len(table))[:cap]))

    def _tensors(self, table: Table) -> TabularTensors:
        x = torch.from_numpy(self.encoder.transform(table))
        y = torch.from_numpy(self.label(table).astype(np.float32))
        s = torch.from_numpy(
            np.stack([self.attributes[p].group_of(table) for p in self.protected], axis=1)
        )
        return TabularTensors(x, y, s)

    def _parsed_splits(self) -> tuple[Table, Table]:
        """``read_splits`` of the raw files.

        Every load checks the checksums; the parse of verified files is cached per process
        (tables are never modified).
        """
        texts = {raw.name: self.raw_text(raw) for raw in self.raw_files}
        key = (type(self).__name__, self.seed, self.test_fraction)
        if key not in _PARSED:
            _PARSED[key] = self.read_splits(texts)
        return _PARSED[key]

    def setup(self, stage: str | None = None) -> None:
        """Parse, split and encode the data once (the encoder is fitted on the training split)."""
        if self.train_set is not None:
            return
        train, test = self._parsed_splits()
        carried = {c for p in self.protected for c in self.attributes[p].columns}

        def keep(columns: tuple[str, ...]) -> tuple[str, ...]:
            """``columns`` without those that carry a protected attribute, unless kept in ``x``."""
            return tuple(c for c in columns if self.protected_in_inputs or c not in carried)

        self.encoder = Encoder(
            keep(self.numeric), keep(self.categorical), self.unknown_categories
        ).fit(train)
        if self.protected_in_inputs:
            names = self.encoder.feature_names
            self.consistency_columns = [
                j for j, n in enumerate(names) if n.split("=")[0] not in carried
            ]
        is_val = self._seeded_mask(len(train), self.val_fraction, salt=1)
        self.train_set = self._tensors(self._cap(train.select(~is_val), self.max_train, salt=2))
        self.val_set = self._tensors(train.select(is_val)) if is_val.any() else None
        self.test_set = self._tensors(self._cap(test, self.max_test, salt=3))

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_batch_as_is,
            drop_last=shuffle and len(dataset) > batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; a ragged last batch is dropped."""
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self):
        """Validation batches in order, or none where ``val_fraction`` is 0."""
        return self._loader(self.val_set, self.test_batch_size) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        """Test batches in order."""
        return self._loader(self.test_set, self.test_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test loader: prediction scores the test split."""
        return self.test_dataloader()


class Adult(TabularDataModule):
    """UCI Adult, from its published train and test files; label ``income > 50K``.

    Rows with ``?`` are dropped (30,162 + 15,060 = 45,222 remain), and so is ``fnlwgt``.
    Protected attributes: ``sex`` (Male, Female), ``race`` (five categories), ``nonwhite``
    (White, non-White), ``age`` (bins <25, 25-44, 45-64, 65+).
    """

    raw_files = ADULT_FILES
    numeric = ADULT_NUMERIC
    categorical = (
        "workclass",
        "education",
        "marital-status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native-country",
    )
    attributes: ClassVar[dict[str, Attribute]] = {
        "sex": Attribute(("Male", "Female"), _lookup("sex", ("Male", "Female")), ("sex",)),
        "race": Attribute(
            ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"),
            _lookup(
                "race", ("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other")
            ),
            ("race",),
        ),
        "nonwhite": Attribute(
            ("White", "non-White"), _lookup("race", ("White",), other=1), ("race",)
        ),
        "age": Attribute(("<25", "25-44", "45-64", "65+"), _bins("age", (25, 45, 65)), ("age",)),
    }

    def read_splits(self, texts):
        """The published split: ``adult.data`` for training, ``adult.test`` for testing."""
        train = parse_adult(texts["adult.data"], "adult.data")
        test = parse_adult(texts["adult.test"], "adult.test")
        return train, test

    def label(self, table):
        """1 where the income is above 50K."""
        return (table.columns["income"] == ">50K").astype(np.int64)


class German(TabularDataModule):
    """UCI Statlog German credit: 1,000 rows, label ``good credit``.

    It has no published test file: the train/test split is seeded (``test_fraction``).
    Protected: ``age`` (<=25, >25), ``sex`` (male, female; read from ``personal_status``,
    which is then left out of the inputs).
    """

    raw_files = (GERMAN_FILE,)
    numeric = GERMAN_NUMERIC
    categorical = tuple(c for c in GERMAN_COLUMNS[:-1] if c not in GERMAN_NUMERIC)
    attributes: ClassVar[dict[str, Attribute]] = {
        "age": Attribute(
            ("<=25", ">25"), lambda t: (t.floats("age") > 25).astype(np.int64), ("age",)
        ),
        "sex": Attribute(
            ("male", "female"), _lookup("sex", ("male", "female")), ("personal_status",)
        ),
    }

    def read_splits(self, texts):
        """One file, split by a seeded mask of ``test_fraction`` of the rows."""
        table = parse_german(texts["german.data"], "german.data")
        is_test = self._seeded_mask(len(table), self.test_fraction, salt=0)
        return table.select(~is_test), table.select(is_test)

    def label(self, table):
        """1 for good credit (the file's code 1), 0 for bad (code 2)."""
        return (table.columns["credit"] == "1").astype(np.int64)


class COMPAS(TabularDataModule):
    """ProPublica COMPAS two-year recidivism, with ProPublica's filters (6,172 rows).

    Label ``two_year_recid``; inputs age, juvenile and prior counts, charge degree, sex, race
    (never the COMPAS scores); seeded train/test split. Protected: ``race`` (other,
    African-American), ``race_all`` (six categories), ``sex`` (Male, Female).
    """

    raw_files = (COMPAS_FILE,)
    numeric = COMPAS_NUMERIC
    categorical = COMPAS_CATEGORICAL
    RACES = ("African-American", "Caucasian", "Hispanic", "Other", "Asian", "Native American")
    attributes: ClassVar[dict[str, Attribute]] = {
        "race": Attribute(
            ("other", "African-American"),
            lambda t: (t.columns["race"] == "African-American").astype(np.int64),
            ("race",),
        ),
        "race_all": Attribute(RACES, _lookup("race", RACES), ("race",)),
        "sex": Attribute(("Male", "Female"), _lookup("sex", ("Male", "Female")), ("sex",)),
    }

    def read_splits(self, texts):
        """One file, split by a seeded mask of ``test_fraction`` of the rows."""
        table = parse_compas(texts[COMPAS_FILE.name], COMPAS_FILE.name)
        is_test = self._seeded_mask(len(table), self.test_fraction, salt=0)
        return table.select(~is_test), table.select(is_test)

    def label(self, table):
        """1 where the person re-offended within two years."""
        return table.columns["two_year_recid"].astype(np.int64)

"""Tabular fairness data sets as DataModules: Adult, German credit and COMPAS.

``AdultDataModule``, ``GermanDataModule`` and ``COMPASDataModule`` serve the sets that
:mod:`lit_rev.data.tabular_schemas` describes (files, parser, columns, protected attributes,
label).

Every batch is ``(x, y, s)``: ``x`` float32 ``(B, D)`` standardised numeric and one-hot
categorical features, ``y`` float32 ``(B,)`` the binary label, ``s`` int64 ``(B, A)`` one
column per protected attribute (group codes ``0..K-1``; names in ``protected_groups``).

By default the columns that carry a protected attribute are left out of ``x``
(``protected_in_inputs=False``): sex, or the raw age when age bins are protected. With them
in, ``consistency_columns`` lists the inputs that are *not* protected, which is where the
consistency metric looks for neighbours.

The train/validation/test split is drawn from ``split_seed`` (default 0), not from the
training ``seed``: every training seed sees the same split, so the rows a hyper-parameter
search validated on (at its search seeds) are never test rows of a reporting seed. With
``val_folds: K`` the non-test rows are cut into ``K`` folds (drawn from ``split_seed``) and
fold ``val_fold`` is the validation split: a search may fit each fold in turn and average
its validation numbers, where one small validation split (German's 70 rows) would hinge on a
few rows.

The raw files ship gzipped inside the package and are checked against the public sources'
SHA-256 on every load. ``root=dir`` reads the raw files from ``dir`` instead (same check),
and ``download=True`` first fetches missing ones from UCI / ProPublica into ``root``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_rev.data import tabular_schemas as schemas
from lit_rev.data.base import BaseDataModule
from lit_rev.data.tables import Encoder, Table, UnknownCategories, read_raw_text
from lit_rev.data.tabular_schemas import TabularSchema
from lit_rev.options import check_choice


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
    """The loaders' ``collate_fn``: :class:`TabularTensors` hands out whole batches already."""
    return batch


class TabularDataModule(BaseDataModule):
    """Base of the tabular DataModules; a subclass names its set's :class:`TabularSchema`.

    Args:
        protected: names of the protected attributes (the keys of the schema's
            ``attributes``; default: its first).
        protected_in_inputs: keep the columns that carry them in ``x`` (default: drop them).
        batch_size: the training batch size.
        test_batch_size: the validation and test batch size.
        val_fraction: part of the training split held out for validation (drawn from
            ``split_seed``); unused with ``val_folds``.
        test_fraction: for sets without a published test file, the part held out (drawn
            from ``split_seed``).
        max_train: optional cap on the training split (seeded by ``seed``) for quick runs.
        max_test: optional cap on the test split (seeded by ``seed``).
        unknown_categories: ``error`` or ``ignore`` for categories absent from the training split.
        root: read the raw files from this directory instead of the shipped copies.
        download: fetch missing raw files into ``root`` from the original source.
        num_workers: worker processes of each loader; 0 loads in the main process.
        seed: the training seed; seeds the caps only.
        split_seed: seeds the train/validation/test split (and the validation folds), the
            same for every training ``seed``.
        val_folds: cut the non-test rows into this many folds (at least 2) and validate on
            one of them, ``val_fold``; ``None``: one ``val_fraction`` validation split.
        val_fold: which fold validates, ``0 <= val_fold < val_folds``.
    """

    schema: ClassVar[TabularSchema]
    collate_fn = staticmethod(_batch_as_is)
    # The tensors are indexed a whole batch at a time in memory; the loaders never pinned them.
    pin_memory = False

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
        split_seed: int = 0,
        val_folds: int | None = None,
        val_fold: int = 0,
    ):
        super().__init__(
            batch_size=batch_size,
            test_batch_size=test_batch_size,
            max_train=max_train,
            max_test=max_test,
            num_workers=num_workers,
            seed=seed,
        )
        if not hasattr(self, "schema"):
            raise TypeError(
                "TabularDataModule is the base of the tabular DataModules; build one of its "
                "subclasses: AdultDataModule, GermanDataModule or COMPASDataModule"
            )
        attributes = self.schema.attributes
        protected = list(protected) if protected is not None else [next(iter(attributes))]
        unknown = [p for p in protected if p not in attributes]
        if unknown or not protected:
            raise ValueError(
                f"{type(self).__name__}: unknown protected attribute(s) {unknown}; "
                f"choose from {list(attributes)}"
            )
        if not 0.0 <= val_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
            raise ValueError("need 0 <= val_fraction < 1 and 0 < test_fraction < 1")
        if val_folds is not None and val_folds < 2:
            raise ValueError(
                f"val_folds must be at least 2 (or null for one val_fraction split), got "
                f"{val_folds}"
            )
        if not 0 <= val_fold < (val_folds or 1):
            raise ValueError(
                f"val_fold must lie in [0, val_folds) = [0, {val_folds or 1}), got {val_fold}"
                + ("" if val_folds else "; set val_folds to validate on folds")
            )
        if download and root is None:
            raise ValueError("download=True needs root: the directory to download into")
        check_choice("unknown_categories", unknown_categories, UnknownCategories)
        self.protected = protected
        self.protected_in_inputs = protected_in_inputs
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.unknown_categories = unknown_categories
        self.split_seed = split_seed
        self.val_folds = val_folds
        self.val_fold = val_fold
        self.root = root
        self.download = download
        self.encoder: Encoder | None = None
        self.consistency_columns: list[int] | None = None
        #: per split (``train``, ``val``, ``test``), the line of the raw file each row came
        #: from, set by ``setup`` (Adult's test rows are lines of its test file)
        self.split_lines: dict[str, np.ndarray] = {}

    # --- the set, as encoded ----------------------------------------------------------------
    @property
    def protected_groups(self) -> list[tuple[str, ...]]:
        """The group names of each protected attribute, in the order of ``s``'s columns."""
        return [self.schema.attributes[p].groups for p in self.protected]

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

    def _rng(self, salt: int, seed: int | None = None) -> np.random.Generator:
        """The numpy generator of one seeded draw; ``salt`` tells the draws apart.

        ``seed`` defaults to the training seed; the split's draws pass ``split_seed``.
        """
        return np.random.default_rng((self.seed if seed is None else seed) * 1000 + salt)

    def _seeded_mask(self, n: int, fraction: float, salt: int) -> np.ndarray:
        """A split's mask of ``round(n * fraction)`` rows, drawn from ``split_seed``."""
        mask = np.zeros(n, dtype=bool)
        mask[self._rng(salt, self.split_seed).permutation(n)[: round(n * fraction)]] = True
        return mask

    def _validation_mask(self, n: int) -> np.ndarray:
        """Which of the ``n`` non-test rows validate: ``val_fraction`` of them, or a fold."""
        if self.val_folds is None:
            return self._seeded_mask(n, self.val_fraction, salt=1)
        fold = np.empty(n, dtype=np.int64)
        # the same permutation as the val_fraction split, dealt into contiguous folds
        fold[self._rng(1, self.split_seed).permutation(n)] = np.arange(n) * self.val_folds // n
        return fold == self.val_fold

    def _cap_indices(self, n: int, cap: int, salt: int) -> Sequence[int]:
        """Like the image caps, but drawn by numpy's generator (as every tabular split is)."""
        return np.sort(self._rng(salt).permutation(n)[:cap])

    def _subset(self, table: Table, indices: Sequence[int]) -> Table:
        """Tables are capped before encoding, so only the kept rows are encoded."""
        return table.select(indices)

    def _tensors(self, table: Table) -> TabularTensors:
        x = torch.from_numpy(self.encoder.transform(table))
        y = torch.from_numpy(self.schema.label(table).astype(np.float32))
        s = torch.from_numpy(
            np.stack([self.schema.attributes[p].group_of(table) for p in self.protected], axis=1)
        )
        return TabularTensors(x, y, s)

    def _parsed_splits(self) -> tuple[Table, Table]:
        """The (training, test) tables: the published split, or a seeded ``test_fraction``.

        Every load checks the checksums; the parse of verified files is cached per process
        (tables are never modified).
        """
        texts = {
            raw.name: read_raw_text(raw, self.root, self.download) for raw in self.schema.files
        }
        key = (self.schema.name, self.split_seed, self.test_fraction)
        if key not in _PARSED:
            train, test = self.schema.parse(texts)
            if test is None:
                is_test = self._seeded_mask(len(train), self.test_fraction, salt=0)
                train, test = train.select(~is_test), train.select(is_test)
            _PARSED[key] = (train, test)
        return _PARSED[key]

    def setup(self, stage: str | None = None) -> None:
        """Parse, split and encode the data once (the encoder is fitted on the training split)."""
        if self.train_set is not None:
            return
        train, test = self._parsed_splits()
        carried = {c for p in self.protected for c in self.schema.attributes[p].columns}

        def keep(columns: tuple[str, ...]) -> tuple[str, ...]:
            """``columns`` without those that carry a protected attribute, unless kept in ``x``."""
            return tuple(c for c in columns if self.protected_in_inputs or c not in carried)

        self.encoder = Encoder(
            keep(self.schema.numeric), keep(self.schema.categorical), self.unknown_categories
        ).fit(train)
        if self.protected_in_inputs:
            names = self.encoder.feature_names
            self.consistency_columns = [
                j for j, n in enumerate(names) if n.split("=")[0] not in carried
            ]
        is_val = self._validation_mask(len(train))
        fit_rows = self._cap(train.select(~is_val), self.max_train, salt=2)
        test_rows = self._cap(test, self.max_test, salt=3)
        self.train_set = self._tensors(fit_rows)
        self.val_set = self._tensors(train.select(is_val)) if is_val.any() else None
        self.test_set = self._tensors(test_rows)
        self.split_lines = {
            "train": fit_rows.lines,
            "val": train.lines[is_val],
            "test": test_rows.lines,
        }


#: Adult's inputs: the full encoding, or AIF360's coarse 18 features.
AdultFeatures = Literal["full", "aif360"]


class AdultDataModule(TabularDataModule):
    """UCI Adult; label ``income > 50K``.

    ``features: full`` (default): the published train and test files; rows with ``?`` are
    dropped (30,162 + 15,060 = 45,222 remain), and so is ``fnlwgt``. Protected attributes:
    ``sex`` (Male, Female), ``race`` (five categories), ``nonwhite`` (White, non-White),
    ``age`` (bins <25, 25-44, 45-64, 65+).

    ``features: aif360``: AIF360's ``load_preproc_data_adult``, the setting of its
    adversarial-debiasing demo (:data:`~lit_rev.data.tabular_schemas.ADULT_AIF360`): 18
    features (age decade, education-years bins, sex and race as 0/1), both files pooled with
    every row kept (48,842), and a seeded ``test_fraction`` (0.3) test split. Protected:
    ``sex`` (Male, Female), ``race`` (White, non-White). AIF360's models see sex and race:
    set ``protected_in_inputs: true`` to match.

    Args:
        *args: :class:`TabularDataModule`'s, in its order.
        features: ``full`` or ``aif360``.
        **kwargs: :class:`TabularDataModule`'s.
    """

    schema = schemas.ADULT

    def __init__(self, *args, features: AdultFeatures = "full", **kwargs):
        check_choice("features", features, AdultFeatures)
        self.features = features
        if features == "aif360":
            self.schema = schemas.ADULT_AIF360  # this instance's set; the class keeps ADULT
        super().__init__(*args, **kwargs)


class GermanDataModule(TabularDataModule):
    """UCI Statlog German credit: 1,000 rows, label ``good credit``.

    It has no published test file: the train/test split is seeded (``test_fraction``).
    Protected: ``age`` (<=25, >25), ``sex`` (male, female; read from ``personal_status``,
    which is then left out of the inputs).
    """

    schema = schemas.GERMAN


class COMPASDataModule(TabularDataModule):
    """ProPublica COMPAS two-year recidivism, with ProPublica's filters (6,172 rows).

    Label ``two_year_recid``; inputs age, juvenile and prior counts, charge degree, sex, race
    (never the COMPAS scores); seeded train/test split. Protected: ``race`` (other,
    African-American), ``race_all`` (six categories), ``sex`` (Male, Female).
    """

    schema = schemas.COMPAS

"""The tabular split is drawn from ``split_seed``, not the training seed; validation folds.

A hyper-parameter search validates at its own seeds (100, 101) and the tables report at
seeds 0-4: no row a search validated on may be a test row of a reporting seed.
"""

import numpy as np
import pytest

from lit_rev.data import AdultDataModule, COMPASDataModule, GermanDataModule

SEARCH_SEEDS = (100, 101)
REPORT_SEEDS = (0, 1, 2, 3, 4)


def split_lines(cls, seed, **kwargs):
    dm = cls(seed=seed, **kwargs)
    dm.setup()
    return dm.split_lines


@pytest.mark.parametrize("cls", [GermanDataModule, COMPASDataModule])
def test_no_search_validation_row_is_a_reporting_test_row(cls):
    searched = {s: split_lines(cls, s) for s in SEARCH_SEEDS}
    reported = {s: split_lines(cls, s) for s in REPORT_SEEDS}
    for s, search in searched.items():
        for r, report in reported.items():
            leaked = np.intersect1d(search["val"], report["test"])
            assert leaked.size == 0, f"{cls.__name__}: {leaked.size} rows ({s} -> {r})"
    # every seed sees the same split; the three parts are disjoint and cover the file
    first = reported[0]
    for lines in [*searched.values(), *reported.values()]:
        for part in ("train", "val", "test"):
            assert np.array_equal(lines[part], first[part])
    every = np.concatenate([first["train"], first["val"], first["test"]])
    assert len(np.unique(every)) == len(every)


def test_the_split_seed_draws_the_split_and_the_training_seed_does_not():
    a, b = split_lines(GermanDataModule, 0), split_lines(GermanDataModule, 7)
    other = split_lines(GermanDataModule, 0, split_seed=3)
    assert np.array_equal(a["test"], b["test"]) and np.array_equal(a["val"], b["val"])
    assert not np.array_equal(a["test"], other["test"])
    assert not np.array_equal(a["val"], other["val"])


def test_adult_validates_on_the_same_rows_at_every_seed():
    a, b = split_lines(AdultDataModule, 0), split_lines(AdultDataModule, 100)
    assert np.array_equal(a["val"], b["val"]) and np.array_equal(a["test"], b["test"])
    assert len(a["val"]) == round(0.1 * (len(a["train"]) + len(a["val"])))


def test_validation_folds_partition_the_non_test_rows():
    folds = [split_lines(GermanDataModule, 0, val_folds=5, val_fold=k) for k in range(5)]
    validated = np.concatenate([f["val"] for f in folds])
    assert len(np.unique(validated)) == len(validated) == 700  # German: 1,000 rows, 300 test
    for f in folds:
        assert len(f["val"]) == 140 and np.array_equal(f["test"], folds[0]["test"])
        assert np.intersect1d(f["train"], f["val"]).size == 0
        assert len(f["train"]) + len(f["val"]) == 700
    again = split_lines(GermanDataModule, 9, val_folds=5, val_fold=2)
    assert np.array_equal(again["val"], folds[2]["val"])  # the folds do not move with seed


def test_bad_fold_settings_name_the_option_and_the_fix():
    with pytest.raises(ValueError, match=r"val_folds must be at least 2.*got 1"):
        GermanDataModule(val_folds=1)
    with pytest.raises(ValueError, match=r"val_fold must lie in \[0, val_folds\) = \[0, 5\)"):
        GermanDataModule(val_folds=5, val_fold=5)
    with pytest.raises(ValueError, match="set val_folds to validate on folds"):
        GermanDataModule(val_fold=1)

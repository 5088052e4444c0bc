"""Adult in AIF360's coarse setting (``AdultDataModule(features="aif360")``).

Known answers from AIF360's ``load_preproc_data_adult`` and its adversarial-debiasing demo:
18 features, 48,842 rows (nothing dropped), a 70/30 split of 34,189 / 14,653 rows.
"""

import numpy as np
import pytest

from lit_rev.data import AdultDataModule, DataFileError
from lit_rev.data.tables import Table, concat_tables
from lit_rev.data.tabular_schemas import coarse_adult_columns, parse_adult

ROW = (
    "{age}, Private, 77516, Bachelors, {edu}, Never-married, ?, Not-in-family, {race}, "
    "{sex}, 0, 0, 40, United-States, >50K"
)


def test_coarse_columns_bin_age_by_decade_and_education_as_aif360_does():
    rows = [
        ROW.format(age=17, edu=5, race="White", sex="Male"),
        ROW.format(age=29, edu=6, race="Black", sex="Female"),
        ROW.format(age=69, edu=12, race="Asian-Pac-Islander", sex="Female"),
        ROW.format(age=70, edu=13, race="White", sex="Male"),
        ROW.format(age=90, edu=16, race="Other", sex="Male"),
    ]
    table = coarse_adult_columns(parse_adult("\n".join(rows), "adult.data", drop_missing=False))
    assert table.columns["age_decade"].tolist() == ["10", "20", "60", ">=70", ">=70"]
    assert table.columns["education_years"].tolist() == ["<6", "6", "12", ">12", ">12"]
    assert table.columns["sex_male"].tolist() == ["1", "0", "0", "1", "1"]
    assert table.columns["race_white"].tolist() == ["1", "0", "0", "1", "0"]
    # the default still drops the rows with '?' (all five have one)
    with pytest.raises(DataFileError, match="no rows"):
        parse_adult("\n".join(rows), "adult.data")


def test_concat_tables_keeps_rows_in_order_and_refuses_other_columns():
    a = Table("a", {"x": np.array(["1", "2"])}, np.array([1, 2]))
    b = Table("b", {"x": np.array(["3"])}, np.array([7]))
    both = concat_tables("a+b", [a, b])
    assert both.columns["x"].tolist() == ["1", "2", "3"] and both.lines.tolist() == [1, 2, 7]
    with pytest.raises(ValueError, match="same columns"):
        concat_tables("a+c", [a, Table("c", {"y": np.array(["1"])}, np.array([1]))])


def test_aif360_setting_has_18_features_and_aif360s_70_30_split():
    data = AdultDataModule(features="aif360", protected=["sex"], protected_in_inputs=True)
    data.setup()
    assert data.input_dim == 18
    train_rows = len(data.train_set) + len(data.val_set)
    assert (train_rows, len(data.test_set)) == (34189, 14653)  # 48,842 rows, 70/30
    names = data.feature_names
    assert sum(n.startswith("age_decade=") for n in names) == 7
    assert sum(n.startswith("education_years=") for n in names) == 9
    assert data.consistency_columns == [j for j, n in enumerate(names) if n != "sex_male"]
    # the protected codes follow the 0/1 input column: Male is group 0 and sex_male is high
    sex_male = data.train_set.x[:, names.index("sex_male")]
    assert bool((sex_male[data.train_set.s[:, 0] == 0] > 0).all())
    assert bool((sex_male[data.train_set.s[:, 0] == 1] < 0).all())


def test_aif360_setting_protects_race_as_white_or_not_and_leaves_it_out_by_default():
    data = AdultDataModule(features="aif360", protected=["race"])
    data.setup()
    assert data.protected_groups == [("White", "non-White")]
    assert data.input_dim == 17 and "race_white" not in data.feature_names
    with pytest.raises(ValueError, match=r"unknown protected attribute.*nonwhite"):
        AdultDataModule(features="aif360", protected=["nonwhite"])
    with pytest.raises(ValueError, match="features"):
        AdultDataModule(features="coarse")


def test_the_full_setting_is_unchanged_by_default():
    data = AdultDataModule()
    assert data.features == "full" and data.schema.name == "Adult"

import gzip
from pathlib import Path

import pytest
import torch

from lit_rev.data import AdultDataModule, COMPASDataModule, DataFileError, GermanDataModule
from lit_rev.data.tables import Encoder
from lit_rev.data.tabular_schemas import ADULT_FILES, GERMAN_FILE, parse_adult, parse_german

ROW = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K"
)


def test_adult_test_file_quirks_junk_line_trailing_dots_blank_lines_and_missing_values():
    text = "\n".join(
        [
            "|1x3 Cross validator",
            ROW + ".",
            "25, Private, 226802, 11th, 7, Never-married, ?, Own-child, Black, Female, 0, 0, 40, "
            "United-States, >50K.",
            ROW.replace("<=50K", ">50K."),
            "",
        ]
    )
    table = parse_adult(text, "adult.test")
    assert len(table) == 2  # junk line, blank line and the row with '?' are gone
    assert table.columns["income"].tolist() == ["<=50K", ">50K"]
    assert table.lines.tolist() == [2, 4]
    assert table.columns["sex"].tolist() == ["Male", "Male"]


def test_malformed_rows_name_the_file_and_line():
    with pytest.raises(
        DataFileError, match=r"adult.data line 2: expected 15 comma-separated fields, got 14"
    ):
        parse_adult(ROW + "\n" + ROW.rsplit(",", 1)[0] + "\n", "adult.data")
    with pytest.raises(DataFileError, match=r"adult.data line 1: income label"):
        parse_adult(ROW.replace("<=50K", "maybe"), "adult.data")
    with pytest.raises(
        DataFileError, match=r"adult.data line 1: column 'age' should be a number, got 'old'"
    ):
        parse_adult(ROW.replace("39,", "old,", 1), "adult.data").floats("age")
    with pytest.raises(DataFileError, match=r"german.data line 1: expected 21"):
        parse_german("A11 6 A34\n", "german.data")


def test_unknown_category_at_test_time_is_a_clear_error_or_zeros():
    train = parse_adult(ROW, "adult.data")
    test = parse_adult(ROW.replace("State-gov", "Moon-gov"), "adult.test")
    enc = Encoder(("age",), ("workclass",)).fit(train)
    with pytest.raises(
        DataFileError,
        match=r"adult.test line 1: column 'workclass' has category 'Moon-gov' not seen",
    ):
        enc.transform(test)
    enc.unknown = "ignore"
    assert enc.transform(test)[:, 1:].sum() == 0.0


def test_shipped_adult_counts_and_identical_one_hot_columns_in_train_and_test():
    dm = AdultDataModule(protected=["sex"])
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 45222
    assert len(dm.test_set) == 15060
    names = dm.feature_names
    assert "fnlwgt" not in names and not any(n.startswith("sex=") for n in names)
    # the test split is encoded with the training split's columns: same width, valid one-hots
    assert dm.test_set.x.shape[1] == dm.train_set.x.shape[1] == len(names) == dm.input_dim
    for column in (
        "workclass",
        "education",
        "marital-status",
        "occupation",
        "relationship",
        "race",
        "native-country",
    ):
        cols = [j for j, n in enumerate(names) if n.startswith(column + "=")]
        assert torch.all(dm.test_set.x[:, cols].sum(1) == 1), column
    # standardisation fitted on the training file only: train mean ~0, test mean not exactly 0
    train_x = torch.cat([dm.train_set.x, dm.val_set.x])
    assert train_x[:, 0].mean().abs() < 1e-4 and dm.test_set.x[:, 0].mean().abs() > 1e-4
    assert 0.24 < float(dm.test_set.y.mean()) < 0.25  # 3,700 of 15,060 earn >50K
    assert dm.protected_classes == [2]


def test_adult_several_attributes_and_protected_kept_in_inputs():
    dm = AdultDataModule(
        protected=["sex", "race", "age"], protected_in_inputs=True, max_train=500, max_test=300
    )
    dm.setup()
    assert dm.protected_classes == [2, 5, 4]
    x, _, s = dm.train_dataloader().__iter__().__next__()
    assert s.shape == (256, 3) and s.dtype == torch.long and x.shape[1] == dm.input_dim
    names = dm.feature_names
    assert any(n.startswith("sex=") for n in names)
    kept = [names[j] for j in dm.consistency_columns]
    assert not any(n.split("=")[0] in ("sex", "race", "age") for n in kept) and len(kept) < len(
        names
    )
    assert len(dm.train_set) == 500 and len(dm.test_set) == 300


def test_german_and_compas():
    dm = GermanDataModule(protected=["age"], seed=3)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 1000
    assert len(dm.test_set) == 300
    sex = GermanDataModule(protected=["sex"])
    sex.setup()
    assert not any(n.startswith("personal_status") for n in sex.feature_names)
    # A92/A95 are female: 310 of 1,000 rows
    total = sum(int(t.s.sum()) for t in (sex.train_set, sex.val_set, sex.test_set))
    assert total == 310
    compas = COMPASDataModule(protected=["race"])
    compas.setup()
    assert len(compas.train_set) + len(compas.val_set) + len(compas.test_set) == 6172
    assert not any(n.startswith("race=") for n in compas.feature_names)


def test_seeded_splits_differ_by_split_seed_and_repeat_by_split_seed():
    a, b = GermanDataModule(split_seed=0), GermanDataModule(split_seed=0, seed=1)
    c = GermanDataModule(split_seed=1)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.test_set.x, b.test_set.x)
    assert not torch.equal(a.test_set.x, c.test_set.x)


def test_unknown_protected_attribute_is_rejected():
    with pytest.raises(ValueError, match="unknown protected attribute"):
        AdultDataModule(protected=["height"])


def _root_with(tmp_path, raw, data: bytes) -> Path:
    (tmp_path / raw.name).write_bytes(data)
    return tmp_path


def test_raw_files_from_a_directory_are_checksummed(tmp_path):
    original = gzip.decompress(
        (Path(__file__).parents[2] / "lit_rev/data/files/german.data.gz").read_bytes()
    )
    root = _root_with(tmp_path, GERMAN_FILE, original)
    dm = GermanDataModule(root=str(root))
    dm.setup()
    assert len(dm.test_set) == 300
    (tmp_path / "german.data").write_bytes(original.replace(b"A11", b"A12", 1))
    with pytest.raises(DataFileError, match=r"checksum mismatch for .*german.data"):
        GermanDataModule(root=str(root)).setup()


def test_missing_raw_file_names_it(tmp_path):
    with pytest.raises(DataFileError, match=r"not found: .*compas-scores-two-years.csv"):
        COMPASDataModule(root=str(tmp_path)).setup()


def test_download_path_fetches_missing_files_then_verifies(tmp_path, monkeypatch):
    shipped = Path(__file__).parents[2] / "lit_rev/data/files"
    fetched = []

    def fake_urlretrieve(url, filename):  # no network in tests: serve the shipped bytes
        name = url.rsplit("/", 1)[-1]
        fetched.append(url)
        Path(filename).write_bytes(gzip.decompress((shipped / f"{name}.gz").read_bytes()))

    monkeypatch.setattr("urllib.request.urlretrieve", fake_urlretrieve)
    dm = AdultDataModule(root=str(tmp_path / "raw"), download=True, max_train=100, max_test=100)
    dm.setup()
    assert sorted(fetched) == sorted(f.url for f in ADULT_FILES)
    assert (tmp_path / "raw" / "adult.test").is_file()
    with pytest.raises(ValueError, match="download=True needs root"):
        AdultDataModule(download=True)


def test_corrupt_shipped_copy_is_a_checksum_error(tmp_path, monkeypatch):
    import lit_rev.data.files as files

    monkeypatch.setitem(files.SHIPPED, "german.data.gz", "0" * 64)
    with pytest.raises(DataFileError, match=r"checksum mismatch for .*german.data.gz"):
        GermanDataModule().setup()

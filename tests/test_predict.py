"""``predict`` writes one CSV row per image (set, position, dataset index, every per-image column
of the module's ``predict_step``) into the run's directory and prints its path: density models,
the RevNet classifier and the fairness models, each through the command line."""

import csv
from pathlib import Path

import pytest
import torch

from lit_rev.callbacks import per_image_columns
from lit_rev.cli import main
from tests.test_cli import tiny_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def written_path(out: str) -> Path:
    line = next(line for line in out.splitlines() if line.startswith("predictions:"))
    return Path(line.rsplit(" written to ", 1)[1])


def test_density_predict_writes_bpd_its_parts_and_ood_columns_per_image(tmp_path, capsys):
    cli = main(
        [
            "predict",
            "--config",
            str(tiny_config(tmp_path)),
            "--allow_untrained=true",
            "--model.init_args.ood_scores=[InputComplexity, Typicality]",
        ]
    )
    path = written_path(capsys.readouterr().out)
    assert path == Path(cli.trainer.logger.log_dir) / "predictions.csv"
    rows = read_rows(path)
    columns = ["bpd", "prior_bpd", "logdet_bpd", "png_bpd", "complexity", "typicality"]
    assert list(rows[0]) == ["set", "position", "dataset_index", *columns]
    entropy = cli.model.ood_scores[1].entropy
    for r in rows:  # the OOD scores themselves, per image, by their definitions
        bpd = float(r["bpd"])
        assert float(r["complexity"]) == pytest.approx(bpd - float(r["png_bpd"]), abs=1e-5)
        assert float(r["typicality"]) == pytest.approx(abs(bpd - entropy), abs=1e-5)
    # max_test: 32 images of each set, every one once, under its set's name
    for name in ("digits", "lfwcrops"):
        assert sorted(int(r["position"]) for r in rows if r["set"] == name) == list(range(32))
    assert len(rows) == 64
    # dataset_index: the image's index in the full data set, not its place in the capped subset
    for name, test_set in zip(cli.datamodule.test_names, cli.datamodule.test_sets, strict=True):
        full = test_set
        while isinstance(full, torch.utils.data.Subset):
            full = full.dataset
        mine = [r for r in rows if r["set"] == name]
        for r in mine:
            image = test_set[int(r["position"])][0]
            assert torch.equal(torch.as_tensor(full[int(r["dataset_index"])][0]), image)
        assert any(r["dataset_index"] != r["position"] for r in mine), name
    returned = cli.trainer.predict_loop.predictions  # [set][batch] dicts of (N,) tensors
    for s, name in enumerate(("digits", "lfwcrops")):
        mine = [r for r in rows if r["set"] == name]
        for key in columns:
            expected = torch.cat([batch[key] for batch in returned[s]]).double()
            written = torch.tensor([float(r[key]) for r in mine], dtype=torch.float64)
            assert torch.allclose(written, expected, rtol=1e-6), key


def test_revnet_classifier_predict_writes_classes_and_probabilities(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "predict",
            "--config",
            str(CONFIGS / "revnet" / "quick_resnet32_mnist5k.yaml"),
            "--allow_untrained=true",
            "--data.init_args.max_test=12",
            "--data.init_args.batch_size=5",
            "--trainer.enable_progress_bar=false",
        ]
    )
    rows = read_rows(written_path(capsys.readouterr().out))
    probs = [f"prob_{c}" for c in range(10)]
    assert list(rows[0]) == ["set", "position", "dataset_index", "predicted", "label", *probs]
    assert len(rows) == 12 and {r["set"] for r in rows} == {"mnist5k"}
    test_set = cli.datamodule.test_sets[0]
    for r in rows:
        prob = torch.tensor([float(r[f"prob_{c}"]) for c in range(10)], dtype=torch.float64)
        assert abs(float(prob.sum()) - 1.0) < 1e-6 and int(r["predicted"]) == int(prob.argmax())
        # the row's index is the image's index in its set
        assert int(r["label"]) == int(test_set[int(r["position"])][1])


def test_fair_model_predict_writes_decision_probability_and_groups(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "predict",
            "--config",
            str(CONFIGS / "fair" / "vanilla_german.yaml"),
            "--allow_untrained=true",
        ]
    )
    rows = read_rows(written_path(capsys.readouterr().out))
    columns = [
        "set",
        "position",
        "dataset_index",
        "predicted",
        "label",
        "prob_0",
        "prob_1",
        "protected_age",
    ]
    assert list(rows[0]) == columns
    test_set = cli.datamodule.test_set
    assert len(rows) == len(test_set) and {r["set"] for r in rows} == {"0"}
    index = torch.tensor([int(r["position"]) for r in rows])
    x, y, s = test_set.__getitems__(index.tolist())
    model = cli.model.eval()
    with torch.no_grad():
        p = model.predict_proba(x).double()
    written = torch.tensor([float(r["prob_1"]) for r in rows], dtype=torch.float64)
    assert torch.allclose(written, p, atol=1e-6)
    assert [int(r["predicted"]) for r in rows] == (p > 0.5).long().tolist()
    assert [int(r["label"]) for r in rows] == y.long().tolist()
    assert [int(r["protected_age"]) for r in rows] == s[:, 0].long().tolist()


@pytest.mark.parametrize(
    "prediction, error",
    [
        ({"bpd": torch.zeros(4), "x": torch.zeros(3)}, "different lengths"),
        ({"image": torch.zeros(4, 1, 2, 2)}, "(N,) or (N, K)"),
        ([torch.zeros(4)], "dict of per-image tensors"),
    ],
)
def test_a_prediction_that_is_not_per_image_is_refused(prediction, error):
    import re

    with pytest.raises((TypeError, ValueError), match=re.escape(error)):
        per_image_columns(prediction, torch.nn.Module())

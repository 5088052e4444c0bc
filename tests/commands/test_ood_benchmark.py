"""python -m lit_rev.commands.ood_benchmark: the table of detector x OOD set x metric, its
files, missing cells for non-finite scores (and exit 1), the score cache, the configs."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from lit_rev.commands import ood_benchmark
from lit_rev.config import instantiate
from lit_rev.evaluation.ood_benchmark import (
    DENSITY_SCORERS,
    MEAN,
    NATIVE_DENSITY_SCORES,
    BenchmarkError,
    ClassifierEntry,
    DensityEntry,
    DensityScore,
    WAICEntry,
)
from lit_rev.ood import OOD_METRICS, ood_metrics
from lit_rev.ood.detectors import ODIN_EPSILONS, ODIN_TEMPERATURES, knn_auto_k
from lit_rev.ood.ensemble import waic_score
from tests.test_configs import shrink_args

REPO = Path(__file__).resolve().parents[2]
OOD_CONFIGS = sorted((REPO / "configs" / "ood").glob("*.yaml"))
EMBEDDED = REPO / "configs" / "ood" / "mnist5k_embedded.yaml"
QUICK_GLOW = REPO / "configs" / "density" / "quick_glow_mnist5k.yaml"
# A Glow small enough to build and score in a fraction of a second.
TINY_GLOW = [
    "--model.init_args.network.init_args.steps=1",
    "--model.init_args.network.init_args.hidden_channels=4",
]


def strict_json(path: Path):
    """The JSON document at ``path``, refusing NaN/Infinity (not JSON)."""

    def refuse(token):
        raise ValueError(f"{path} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# ----- the configs ---------------------------------------------------------------------------
def test_the_three_benchmark_configs_exist():
    names = {p.name for p in OOD_CONFIGS}
    assert {"mnist5k_embedded.yaml", "mnist5k_waic.yaml", "cifar10_openood.yaml"} <= names


@pytest.mark.parametrize("config", OOD_CONFIGS, ids=lambda p: p.name)
def test_benchmark_config_parses(config):
    options = ood_benchmark.parser()
    args = options.parse_args(["--config", str(config)])
    built = options.instantiate_classes(args)
    assert built.detectors and built.data.test_names[0]
    for detector in built.detectors:
        for spec in detector.models():
            assert all(Path(c).is_file() for c in spec.configs), spec.configs


def test_embedded_config_lists_what_the_issue_asks():
    config = yaml.safe_load(EMBEDDED.read_text())
    options = ood_benchmark.parser()
    built = options.instantiate_classes(options.parse_args(["--config", str(EMBEDDED)]))
    assert built.data.test_names == [
        "mnist5k",
        "lfwcrops",
        "naturalpatches",
        "digits",
        "constantimages",
        "uniformnoise",
        "mnist5k-upsidedown",
    ]
    labels = [label for d in built.detectors for label in d.labels()]
    classifier = ["msp", "max_logit", "energy", "odin", "mahalanobis", "knn"]
    density = [f"{m}/{s}" for m in ("glow", "vae", "pixelcnnpp") for s in ("bpd", "typicality")]
    assert [f"revnet38/{d}" for d in classifier] == labels[:6]
    assert set(density) < set(labels)
    assert all(d["init_args"].get("ckpt_path") is None for d in config["detectors"])  # trained
    # near-OOD: the in-distribution digits upside down; far-OOD: every other set
    assert config["ood_groups"] == {
        "near": ["mnist5k-upsidedown"],
        "far": ["lfwcrops", "naturalpatches", "digits", "constantimages", "uniformnoise"],
    }


def test_cifar10_config_groups_its_sets_as_openood_v1_5():
    config = yaml.safe_load((REPO / "configs" / "ood" / "cifar10_openood.yaml").read_text())
    options = ood_benchmark.parser()
    args = options.parse_args(["--config", str(REPO / "configs" / "ood" / "cifar10_openood.yaml")])
    ood = options.instantiate_classes(args).data.test_names[1:]
    assert config["ood_groups"] == {
        "near": ["cifar100"],
        "far": ["mnist", "svhn", "dtd", "places365"],
    }
    assert sorted(n for names in config["ood_groups"].values() for n in names) == sorted(ood)


def test_a_bad_key_is_an_error_naming_it(tmp_path, capsys):
    config = yaml.safe_load(EMBEDDED.read_text())
    config["detectors"][1]["init_args"]["max_stpes"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as stopped:
        ood_benchmark.main(["--config", str(path), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "max_stpes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unknown_detector_or_score_is_refused():
    with pytest.raises(BenchmarkError, match="unknown classifier detector 'mps'"):
        ClassifierEntry("r", str(QUICK_GLOW), detectors=["mps"])
    with pytest.raises(BenchmarkError, match="unknown density score 'bdp'"):
        DensityEntry("g", str(QUICK_GLOW), scores=["bdp"])
    with pytest.raises(BenchmarkError, match="at least 2 members"):
        WAICEntry("w", config=str(QUICK_GLOW), seeds=[0])


# ----- runs from checkpoints (fast: tiny Glows, no training) ----------------------------------
def tiny_benchmark(tmp_path: Path, detectors: list[dict], ood=("ConstantImages", "Digits")) -> Path:
    config = {
        "seed": 0,
        "data": {
            "class_path": "ImageDataModule",
            "init_args": {
                "dataset": "MNIST5k",
                "ood": list(ood),
                "ood_split": "all",
                "max_test": 24,
                "max_train": 64,
                "test_batch_size": 12,
                "val_fraction": 0.05,
            },
        },
        "detectors": detectors,
    }
    path = tmp_path / "benchmark.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tiny_glow():
    """The tiny Glow of TINY_GLOW, built once (a config parse takes a second or two)."""
    torch.manual_seed(0)
    module, _ = instantiate(QUICK_GLOW, TINY_GLOW)
    return module.eval()


def glow_checkpoint(module, path: Path, seed: int = 0, nan: bool = False) -> Path:
    """``module``'s weights, each moved by seeded noise (seed 0: unchanged), as a checkpoint."""
    g = torch.Generator().manual_seed(seed)
    state = {
        k: v + 0.05 * seed * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in module.state_dict().items()
    }
    if nan:
        key = next(k for k, v in state.items() if v.is_floating_point() and "weight" in k)
        state[key] = torch.full_like(state[key], float("nan"))
    torch.save({"state_dict": state}, path)
    return path


def bpd_of(module, path: Path, images: torch.Tensor) -> torch.Tensor:
    """Bits/dim of ``images`` under the weights of the checkpoint at ``path``."""
    module.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    with torch.no_grad():
        return module.eval().scores(images)["bpd"].double()


def density(name: str, ckpt_path=None, scores=("bpd", "typicality")) -> dict:
    args = {"name": name, "config": str(QUICK_GLOW), "scores": list(scores), "overrides": TINY_GLOW}
    if ckpt_path is not None:
        args["ckpt_path"] = str(ckpt_path)
    return {"class_path": "DensityEntry", "init_args": args}


@pytest.mark.slow
def test_nan_scores_give_missing_cells_and_exit_1_and_the_rest_stands(tiny_glow, tmp_path, capsys):
    bad = glow_checkpoint(tiny_glow, tmp_path / "bad.ckpt", nan=True)
    good = glow_checkpoint(tiny_glow, tmp_path / "good.ckpt")
    config = tiny_benchmark(tmp_path, [density("broken", bad), density("fine")])
    out = tmp_path / "out"
    argv = ["--config", str(config), "--out", str(out), "--progress", "false"]
    with pytest.raises(SystemExit) as stopped:  # 'fine' has its checkpoint on the command line
        ood_benchmark.main([*argv, "--ckpt_paths.fine", str(good)])
    assert stopped.value.code == 1
    assert "THE RUN FAILED" in capsys.readouterr().err
    document = strict_json(out / "ood_benchmark.json")
    assert document["meta"]["status"].startswith(
        "failed: broken/bpd, broken/typicality on constantimages: non-finite scores"
    )
    rows = document["rows"]
    assert len(rows) == 2 * 2 * 3  # 2 detectors x 2 scores x (2 sets + mean)
    for r in rows:
        if r["detector"].startswith("broken/"):
            assert r["auroc"] is None and r["missing"].startswith(("non-finite", "no mean"))
        else:
            assert all(isinstance(r[m], float) for m in OOD_METRICS) and "missing" not in r
    assert "non-finite scores: 24 of 24 in constantimages, 24 of 24 in mnist5k" in {
        r.get("missing") for r in rows
    }
    assert {r["detector"] for r in rows} == {
        "broken/bpd",
        "broken/typicality",
        "fine/bpd",
        "fine/typicality",
    }
    assert (out / "scores" / "broken.pt").is_file() and (out / "scores" / "fine.pt").is_file()
    assert (out / "heatmap_auroc.png").is_file()

    # a rerun with the same out dir reuses both detectors' scores: the same table
    (out / "ood_benchmark.json").unlink()
    with pytest.raises(SystemExit):
        ood_benchmark.main([*argv, "--ckpt_paths.fine", str(good)])
    assert capsys.readouterr().out.count("scores of an earlier run with the same settings") == 2
    assert strict_json(out / "ood_benchmark.json")["rows"] == rows
    # another checkpoint is another setting: recomputed
    other = glow_checkpoint(tiny_glow, tmp_path / "other.ckpt", seed=1)
    with pytest.raises(SystemExit):
        ood_benchmark.main([*argv, "--ckpt_paths.fine", str(other)])
    assert capsys.readouterr().out.count("scores of an earlier run with the same settings") == 1


@pytest.mark.slow
def test_scores_are_the_models_own_and_waic_combines_them(tiny_glow, tmp_path):
    """A density detector's bits/dim are DensityModule.scores of the benchmark's images; the
    WAIC row is waic_score of the members' log-likelihoods in nats."""
    paths = [glow_checkpoint(tiny_glow, tmp_path / f"m{i}.ckpt", seed=i) for i in range(3)]
    waic = {
        "class_path": "WAICEntry",
        "init_args": {
            "name": "ens",
            "config": str(QUICK_GLOW),
            "seeds": [0, 1, 2],
            "ckpt_paths": [str(p) for p in paths],
            "overrides": TINY_GLOW,
        },
    }
    single = density("g", paths[0], scores=("bpd", "complexity"))
    config = tiny_benchmark(tmp_path, [single, waic])
    out = tmp_path / "o"
    rows = ood_benchmark.main(["--config", str(config), "--out", str(out), "--progress", "false"])
    assert [r["detector"] for r in rows] == ["g/bpd"] * 3 + ["g/complexity"] * 3 + ["ens/waic"] * 3
    saved = torch.load(out / "scores" / "g.pt", weights_only=True)["scores"]
    saved.update(torch.load(out / "scores" / "ens.pt", weights_only=True)["scores"])
    options = ood_benchmark.parser()
    built = options.instantiate_classes(options.parse_args(["--config", str(config)]))
    built.data.setup("test")
    for name, loader in zip(built.data.test_names, built.data.test_dataloader(), strict=True):
        images = torch.cat([x for x, _ in loader])
        assert len(images) == len(saved["g/complexity"][name]) == 24
        torch.testing.assert_close(saved["g/bpd"][name], bpd_of(tiny_glow, paths[0], images))
        nats = [-bpd_of(tiny_glow, p, images) * 28 * 28 * math.log(2) for p in paths]
        torch.testing.assert_close(saved["ens/waic"][name], waic_score(torch.stack(nats)))
    summary = strict_json(out / "ood_benchmark_summary.json")["rows"]
    assert {r["target"] for r in summary} == {"too few images (24 < 100)"}
    for label in ("g/bpd", "ens/waic"):
        cell = next(r for r in rows if r["detector"] == label and r["set"] == "constantimages")
        expected = ood_metrics(saved[label]["mnist5k"], saved[label]["constantimages"])
        assert {m: cell[m] for m in OOD_METRICS} == expected


@pytest.mark.slow
def test_a_detector_that_fails_is_reported_and_the_others_stand(tiny_glow, tmp_path, capsys):
    """An error inside one detector (here KNN asking for more neighbours than training
    images) leaves its cells missing with the error, and the run exits 1 after the others."""
    revnet = REPO / "configs" / "revnet" / "quick_revnet38_mnist5k.yaml"
    model, _ = instantiate(revnet)
    classifier_ckpt = tmp_path / "revnet.ckpt"
    torch.save({"state_dict": model.state_dict()}, classifier_ckpt)
    classifier = {
        "class_path": "ClassifierEntry",
        "init_args": {
            "name": "r",
            "config": str(revnet),
            "detectors": ["msp", "knn"],
            "detector_args": {"knn": {"k": 1000}},
            "ckpt_path": str(classifier_ckpt),
        },
    }
    good = glow_checkpoint(tiny_glow, tmp_path / "good.ckpt")
    config = tiny_benchmark(tmp_path, [classifier, density("g", good, scores=["bpd"])])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        ood_benchmark.main(["--config", str(config), "--out", str(out), "--progress", "false"])
    assert stopped.value.code == 1
    assert "KNN" in capsys.readouterr().err  # the traceback and the summary
    rows = strict_json(out / "ood_benchmark.json")["rows"]
    assert [r["detector"] for r in rows] == ["r/msp"] * 3 + ["r/knn"] * 3 + ["g/bpd"] * 3
    for r in rows[:6]:
        assert r["auroc"] is None and r["missing"].startswith(
            ("failed: ValueError: KNN", "no mean")
        )
    assert all(isinstance(r["auroc"], float) for r in rows[6:])
    assert not (out / "scores" / "r.pt").exists()  # a failed detector is recomputed next time


def test_a_model_that_does_not_fit_the_data_stops_before_anything_runs(tmp_path, capsys):
    config = tiny_benchmark(tmp_path, [density("g")])
    out = tmp_path / "out"
    argv = ["--config", str(config), "--out", str(out), "--data.init_args.n_bits=5"]
    with pytest.raises(SystemExit) as stopped:
        ood_benchmark.main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "detector g" in err and "n_bits" in err and "5" in err
    assert not out.exists()
    # trained on another in-distribution set: refused too
    argv = [
        "--config",
        str(config),
        "--out",
        str(out),
        "--data.init_args.dataset=Digits",
        "--data.init_args.image_size=28",
    ]
    with pytest.raises(SystemExit):
        ood_benchmark.main(argv)
    assert "trained on 'mnist5k'" in capsys.readouterr().err


# ----- end to end, training from nothing (slow) ----------------------------------------------
TINY_TRAINING = [
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
]


@pytest.mark.slow
def test_embedded_benchmark_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "--config",
        str(EMBEDDED),
        "--out",
        str(out),
        "--max_images",
        "30",
        "--data.init_args.max_train=60",
        "--train_overrides",
        json.dumps(TINY_TRAINING),
        "--progress",
        "false",
    ]
    rows = ood_benchmark.main(argv)
    ood = [
        "lfwcrops",
        "naturalpatches",
        "digits",
        "constantimages",
        "uniformnoise",
        "mnist5k-upsidedown",
    ]
    labels = [f"revnet38/{d}" for d in ("msp", "max_logit", "energy", "odin", "mahalanobis", "knn")]
    labels += [
        f"{m}/{s}"
        for m in ("glow", "vae", "pixelcnnpp")
        for s in ("bpd", "typicality", "complexity")
    ]
    assert [(r["detector"], r["set"]) for r in rows] == [
        (label, s) for label in labels for s in [*ood, MEAN, "mean_near", "mean_far"]
    ]
    assert all(isinstance(r[m], float) for r in rows for m in OOD_METRICS)
    document = strict_json(out / "ood_benchmark.json")
    assert document["rows"] == rows and document["meta"]["status"] == "ok"
    assert document["meta"]["sets"]["mnist5k"] == 30
    for name in (
        "ood_benchmark.csv",
        "ood_benchmark.md",
        "ood_benchmark_summary.md",
        "heatmap_auroc.png",
        "heatmap_fpr_at_95_tpr.png",
    ):
        assert (out / name).is_file()
    printed = capsys.readouterr().out
    assert "revnet38/odin" in printed and "target" in printed
    # ODIN's T and eps chosen on the validation split from the grid, KNN's k from the bank
    chosen = document["meta"]["detectors"]["revnet38"]["settings"]
    assert chosen["odin"]["temperature"] in ODIN_TEMPERATURES
    assert chosen["odin"]["epsilon"] in ODIN_EPSILONS
    assert chosen["knn"] == {
        "k": knn_auto_k(60),
        "bank": 60,
        "k_rule": "auto: round(50 * bank / 50000), at least 1",
    }
    assert document["meta"]["fpr_convention"] == "in"
    # every model was trained from nothing into the out dir, for the 2 steps asked
    for name in ("revnet38", "glow", "vae", "pixelcnnpp"):
        info = document["meta"]["detectors"][name]["models"][0]
        assert info["weights"] == "trained from nothing, 2 steps"
        assert Path(info["train_log"]).is_relative_to(out)
        # the config's own end-of-fit OOD evaluation is skipped (the benchmark scores the model)
        assert not (Path(info["train_log"]) / "ood_report.md").exists()


@pytest.mark.slow
def test_cifar10_openood_config_smoke_runs_on_fake_files(fake_vision, tmp_path):
    config = yaml.safe_load((REPO / "configs" / "ood" / "cifar10_openood.yaml").read_text())
    for detector in config["detectors"]:  # the fake training split has fewer than k=50 images
        if detector["class_path"] == "ClassifierEntry":
            detector["init_args"]["detector_args"] = {"knn": {"k": 5}}
        # paper-size networks shrunk as in the config smoke runs (tests/test_configs.py, which
        # also builds each at its own size once): this test is about the benchmark's plumbing
        detector["init_args"]["overrides"] = shrink_args(REPO / detector["init_args"]["config"])
    path = tmp_path / "cifar10_openood.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        "--config",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--max_images",
        "4",
        "--data.init_args.max_train=8",
        "--data.init_args.test_batch_size=2",
        "--data.init_args.num_workers=0",
        "--train_overrides",
        json.dumps(
            [*TINY_TRAINING, "--data.init_args.batch_size=2", "--data.init_args.num_workers=0"]
        ),
        "--progress",
        "false",
    ]
    rows = ood_benchmark.main(argv)
    sets = {"cifar100", "mnist", "svhn", "dtd", "places365"}
    assert {r["set"] for r in rows} == {*sets, MEAN, "mean_near", "mean_far"}
    assert all(isinstance(r["auroc"], float) for r in rows)


def test_the_option_types_list_exactly_the_scores_and_detectors_the_command_knows():
    """``--help`` and the parser read the Literal types; the runtime checks read the tables."""
    import typing

    from lit_rev.ood.detectors import DETECTORS, DetectorName

    scores = set(typing.get_args(DensityScore))
    assert scores == {*NATIVE_DENSITY_SCORES, *DENSITY_SCORERS}
    assert set(typing.get_args(DetectorName)) == set(DETECTORS)


# ----- refused before any work, exit 2 ---------------------------------------------------------
def refused(argv: list[str], capsys) -> str:
    """The error of a command line that must stop with exit 2 (what it printed to stderr)."""
    with pytest.raises(SystemExit) as stopped:
        ood_benchmark.main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_an_out_that_is_a_file_stops_before_any_scoring(tiny_glow, tmp_path, capsys):
    good = glow_checkpoint(tiny_glow, tmp_path / "good.ckpt")
    config = tiny_benchmark(tmp_path, [density("g", good, scores=["bpd"])])
    out = tmp_path / "taken"
    out.write_text("not a directory")
    err = refused(["--config", str(config), "--out", str(out), "--progress", "false"], capsys)
    assert f"--out {out}: exists and is not a directory" in err
    assert out.read_text() == "not a directory"


def test_check_only_refuses_a_classifier_entry_on_a_density_config(tmp_path, capsys):
    classifier = {
        "class_path": "ClassifierEntry",
        "init_args": {"name": "r", "config": str(QUICK_GLOW), "overrides": TINY_GLOW},
    }
    config = tiny_benchmark(tmp_path, [classifier])
    err = refused(["--config", str(config), "--check_only", "true"], capsys)
    assert "detectors: r" in err and "DensityModule" in err and "DensityEntry" in err


@pytest.mark.parametrize("steps", [-5, 0])
def test_check_only_refuses_a_budget_below_one_step(tmp_path, capsys, steps):
    entry = density("g")
    entry["init_args"]["max_steps"] = steps
    config = tiny_benchmark(tmp_path, [entry])
    err = refused(["--config", str(config), "--check_only", "true"], capsys)
    assert f"detector g: max_steps = {steps}" in err and ">= 1" in err


@pytest.mark.parametrize("cap", ["-1", "0"])
def test_a_test_set_cap_below_one_is_refused(tmp_path, capsys, cap):
    config = tiny_benchmark(tmp_path, [density("g")])
    err = refused(["--config", str(config), "--max_images", cap, "--check_only", "true"], capsys)
    assert f"--max_images {cap}" in err and ">= 1" in err


def test_a_missing_or_foreign_checkpoint_names_the_detector_path_and_fix(tmp_path, capsys):
    config = tiny_benchmark(tmp_path, [density("g")])
    missing = tmp_path / "missing.ckpt"
    argv = ["--config", str(config), "--out", str(tmp_path / "out"), "--progress", "false"]
    err = refused([*argv, "--ckpt_paths.g", str(missing)], capsys)
    assert f"detector g: checkpoint {missing}" in err and "--ckpt_paths.g" in err
    foreign = tmp_path / "foreign.ckpt"  # the full-size quick Glow's weights for the tiny one
    full, _ = instantiate(QUICK_GLOW)
    torch.save({"state_dict": full.state_dict()}, foreign)
    err = refused([*argv, "--ckpt_paths.g", str(foreign)], capsys)
    assert f"detector g: checkpoint {foreign}" in err and "does not fit" in err
    assert not (tmp_path / "out").exists()


def waic_entry(**init_args) -> dict:
    args = {"name": "ens", "overrides": TINY_GLOW, **init_args}
    return {"class_path": "WAICEntry", "init_args": args}


def test_a_waic_ensemble_of_identical_members_is_refused_naming_them(tiny_glow, tmp_path, capsys):
    config = tiny_benchmark(tmp_path, [waic_entry(config=str(QUICK_GLOW), seeds=[0, 1, 0])])
    err = refused(["--config", str(config), "--check_only", "true"], capsys)
    assert "members ens/0 and ens/2 are the same model" in err
    ckpt = glow_checkpoint(tiny_glow, tmp_path / "m.ckpt")
    copy = tmp_path / "same.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    same = waic_entry(config=str(QUICK_GLOW), seeds=[0, 1], ckpt_paths=[str(ckpt), str(copy)])
    config = tiny_benchmark(tmp_path, [same])
    err = refused(["--config", str(config), "--check_only", "true"], capsys)
    assert "members ens/0 and ens/1 are the same model" in err
    # distinct checkpoints pass
    other = glow_checkpoint(tiny_glow, tmp_path / "other.ckpt", seed=1)
    ood_benchmark.main(
        ["--config", str(config), "--check_only", "true", "--ckpt_paths.ens/1", str(other)]
    )


@pytest.mark.slow
def test_the_cache_follows_the_contents_of_checkpoints_and_configs(tiny_glow, tmp_path, capsys):
    model_config = tmp_path / "glow.yaml"
    model_config.write_text(QUICK_GLOW.read_text())
    ckpt = glow_checkpoint(tiny_glow, tmp_path / "g.ckpt")
    entry = density("g", ckpt, scores=["bpd"])
    entry["init_args"]["config"] = str(model_config)
    config = tiny_benchmark(tmp_path, [entry])
    out = tmp_path / "out"
    argv = ["--config", str(config), "--out", str(out), "--progress", "false"]
    reused = "scores of an earlier run with the same settings"

    def scores():
        return torch.load(out / "scores" / "g.pt", weights_only=True)["scores"]["g/bpd"]

    ood_benchmark.main(argv)
    first = scores()
    ood_benchmark.main(argv)
    assert capsys.readouterr().out.count(reused) == 1
    glow_checkpoint(tiny_glow, ckpt, seed=1)  # other weights at the same path
    ood_benchmark.main(argv)
    assert capsys.readouterr().out.count(reused) == 0
    assert not torch.equal(scores()["mnist5k"], first["mnist5k"])
    model_config.write_text(QUICK_GLOW.read_text() + "\n# edited\n")  # the same path, edited
    ood_benchmark.main(argv)
    assert capsys.readouterr().out.count(reused) == 0
    ood_benchmark.main(argv)
    assert capsys.readouterr().out.count(reused) == 1


def test_ood_groups_that_do_not_split_the_sets_stop_before_anything_runs(tmp_path, capsys):
    config = tiny_benchmark(tmp_path, [density("g")])
    groups = json.dumps({"near": ["digits"], "far": ["constant"]})
    err = refused(["--config", str(config), "--ood_groups", groups, "--check_only", "true"], capsys)
    assert "ood_groups.far: 'constant' is not an OOD set" in err
    assert "['constantimages', 'digits']" in err
    err = refused(["--config", str(config), "--fpr_convention", "ood"], capsys)
    assert "fpr_convention" in err and "openood" in err


@pytest.mark.slow
def test_groups_and_the_openood_convention_reach_the_files(tiny_glow, tmp_path, capsys):
    good = glow_checkpoint(tiny_glow, tmp_path / "good.ckpt")
    config = tiny_benchmark(tmp_path, [density("g", good, scores=["bpd"])])
    out = tmp_path / "out"
    groups = json.dumps({"near": ["digits"], "far": ["constantimages"]})
    argv = ["--config", str(config), "--out", str(out), "--progress", "false"]
    rows = ood_benchmark.main([*argv, "--ood_groups", groups, "--fpr_convention", "openood"])
    assert [r["set"] for r in rows] == ["constantimages", "digits", MEAN, "mean_near", "mean_far"]
    meta = strict_json(out / "ood_benchmark.json")["meta"]
    assert meta["fpr_convention"] == "openood" and meta["summary_fpr"] == "fpr_at_95_tpr_openood"
    assert meta["ood_groups"] == {"near": ["digits"], "far": ["constantimages"]}
    summary = strict_json(out / "ood_benchmark_summary.json")["rows"]
    assert summary[0]["metrics"] == "auroc / fpr_at_95_tpr_openood"
    assert "mean_near" in summary[0] and "mean_far" in summary[0]
    assert (out / "heatmap_fpr_at_95_tpr_openood.png").is_file()
    printed = capsys.readouterr().out
    assert "FPR@95 = fpr_at_95_tpr_openood, TPR measured on the OOD set" in printed

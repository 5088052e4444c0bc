"""A non-editable install runs from anywhere: the quickstart, an OOD benchmark and a figure,
with the configs copied elsewhere and nothing read from the source tree."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_FIT = [
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.max_test=40",
]


def run(cmd: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LIT_REV_THREADS"] = "1"
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_an_installed_package_runs_the_quickstart_a_benchmark_and_a_figure_from_elsewhere(
    tmp_path,
):
    # the package's files only: the build writes build/ and *.egg-info next to its sources
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "lit_rev", source / "lit_rev", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    venv = tmp_path / "venv"
    # without a pip of its own: on Python < 3.12 that comes with an old setuptools that would
    # shadow the system's (which builds the wheel); the system's pip installs into the venv
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", source]
    run(pip, tmp_path)

    work = tmp_path / "work"  # a copy of configs/, away from the source tree
    shutil.copytree(REPO / "configs", work / "configs")
    where = run([python, "-c", "import lit_rev; print(lit_rev.__file__)"], work).stdout.strip()
    installed = Path(where).resolve()
    assert installed.is_relative_to(venv.resolve()), where
    assert not installed.is_relative_to(REPO) and not installed.is_relative_to(source)

    fit = [python, "-m", "lit_rev", "fit", "--config", work / "configs" / "quickstart.yaml"]
    run([*fit, *TINY_FIT], work)
    run_dir = work / "logs" / "quickstart" / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "ood_report.md").is_file()  # the MNIST5k OOD set: the package's data

    elsewhere = tmp_path / "elsewhere"  # the benchmark's configs found below its YAML's tree
    elsewhere.mkdir()
    out = tmp_path / "benchmark"
    benchmark = [
        python,
        "-m",
        "lit_rev.commands.ood_benchmark",
        "--config",
        work / "configs" / "ood" / "naturalpatches_quickstart.yaml",
        "--out",
        out,
        "--max_images",
        "20",
        "--train_overrides",
        json.dumps(TINY_FIT),
        "--progress",
        "false",
    ]
    run(benchmark, elsewhere)
    document = json.loads((out / "ood_benchmark.json").read_text())
    assert document["meta"]["status"] == "ok"
    assert document["meta"]["sets"]["naturalpatches"] == 20
    (model,) = document["meta"]["detectors"]["glow"]["models"]
    assert model["config"] == [str(work / "configs" / "quickstart.yaml")]
    assert model["weights"] == "trained from nothing, 2 steps"
    for name in ("ood_benchmark.csv", "ood_benchmark_summary.md", "heatmap_auroc.png"):
        assert (out / name).is_file()

    # the figures, by config path: a tiny copy of the quickstart config, from elsewhere
    import yaml

    tiny = yaml.safe_load((work / "configs" / "quickstart.yaml").read_text())
    tiny["trainer"].update(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    tiny["data"]["init_args"]["max_test"] = 40
    tiny_config = work / "configs" / "tiny_quickstart.yaml"
    tiny_config.write_text(yaml.safe_dump(tiny))
    figures = [python, "-m", "lit_rev.commands.figures", "--only", "quickstart_graying"]
    figures += ["--quickstart_config", tiny_config, "--work_dir", tmp_path / "figures_work"]
    run([*figures, "--out", tmp_path / "figures"], elsewhere)
    assert (tmp_path / "figures" / "quickstart_graying.png").is_file()

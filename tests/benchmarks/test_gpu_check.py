"""benchmarks/gpu_check.py with ``--cpu --tiny``: every section runs, so the check cannot rot."""

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_in_process_sections_report_memory_and_speed(tmp_path, capsys):
    gpu_check = load()
    out = tmp_path / "check.json"
    result = gpu_check.main(
        ["--cpu", "--tiny", "--sections", "pixelcnn", "revnet", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == result
    rows = {(r["name"], r["unit"]): r["value"] for r in result["rows"]}
    assert rows[("PixelCNN++ bf16-mixed", "s/step")] > 0
    saving = rows[("RevNet-110 memory-saving", "saved MB")]
    assert saving < rows[("RevNet-110 plain", "saved MB")] / 2
    assert rows[("RevNet-110 memory-saving", "peak MB")] is None  # CUDA only
    printed = capsys.readouterr().out
    assert "RevNet-110 memory-saving" in printed and "saved MB" in printed


def test_generated_files_are_in_the_real_formats(tmp_path):
    """The CLI runs' data: torchvision's own CIFAR and SVHN readers load them, checksums
    accepted through the subprocesses' ``sitecustomize``."""
    gpu_check = load()
    site = gpu_check.write_data(tmp_path, tiny=True)
    code = (
        "import os, torchvision.datasets as tvd; r = os.environ['LIT_REV_GPU_CHECK_DATA'];"
        "print(len(tvd.CIFAR10(r, train=True)), len(tvd.CIFAR100(r, train=False)),"
        " len(tvd.SVHN(r, split='test')))"
    )
    env = {"LIT_REV_GPU_CHECK_DATA": str(tmp_path / "data"), "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["40", "20", "20"]
    with open(tmp_path / "data" / "cifar-10-batches-py" / "test_batch", "rb") as f:
        assert pickle.load(f)["data"].shape == (20, 3072)


@pytest.mark.slow
def test_cpu_tiny_runs_glow_with_compile_and_the_three_cli_fits(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--cpu",
            "--tiny",
            "--sections",  # pixelcnn and revnet: in the test above
            "glow",
            "cli",
            "--cli-steps",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    sections = {r["section"] for r in result["rows"]}
    assert sections == {"glow", "cli"}
    fits = [r for r in result["rows"] if r["section"] == "cli"]
    assert [r["exit"] for r in fits] == [0, 0, 0]
    assert {"Glow float32", "Glow bf16-mixed", "Glow compiled"} <= {
        r["name"] for r in result["rows"]
    }
    assert "fit fair/grad_pred_adult.yaml" in done.stdout

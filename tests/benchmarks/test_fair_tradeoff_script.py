"""benchmarks/fair_tradeoff.sh, run against a stand-in ``python`` that records its commands.

The real fits take an hour per data set; what this checks is the plan: every method is
searched on validation seeds, every report runs on seeds 0-4 with the chosen files, the
curves get their knob, and a second run keeps what the first finished.
"""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

FAKE_PYTHON = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    # records its arguments; writes the file each command would write
    echo "$*" >> "$CALLS"
    args=("$@")
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[$i]}" in
        --out) out="${args[$((i + 1))]}" ;;
        --name) name="${args[$((i + 1))]}" ;;
        --config) config="${args[$((i + 1))]}" ;;
        esac
    done
    mkdir -p "$out"
    if [[ "$*" == *fair_search* ]]; then
        stem=$(basename "${config##*+}" .yaml)
        echo '{"overrides": ["--model.init_args.adversary_steps=3"]}' > "$out/${stem}_chosen.json"
    else
        echo '{}' > "$out/$name.json"
    fi
    """
)


@pytest.fixture
def fake_python(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return bin_dir


def run_script(bin_dir, tmp_path, dataset, **env):
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "OUT": str(tmp_path / "out"),
        **env,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "fair_tradeoff.sh"), dataset],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "FAILED" not in done.stdout, done.stdout + done.stderr
    return calls.read_text().splitlines() if calls.exists() else []


def test_the_script_searches_every_method_then_reports_on_unseen_seeds(fake_python, tmp_path):
    calls = run_script(fake_python, tmp_path, "german")
    searches = [c for c in calls if "fair_search" in c]
    reports = [c for c in calls if "fair_results" in c]
    assert len(searches) == 7 and all("--seeds 100 101" in c for c in searches)
    assert all("--rule delta" in c for c in searches if "vanilla" not in c)
    assert "--rule accuracy --max_discrimination 1" in searches[0]  # Vanilla: accuracy only
    auto = next(c for c in searches if "grad_auto" in c)
    assert "grad_auto_german.yaml+" in auto and "--grid stage1:model.init_args.lambda_=" in auto
    tuned, tuned_eg = reports[0], reports[1]
    assert "--name german_tuned " in tuned and tuned.count("_chosen.json") == 5
    assert "--seeds 5" in tuned and "thresholdopt_logistic_german.yaml" in tuned
    assert "--name german_tuned_eg" in tuned_eg and tuned_eg.count("_chosen.json") == 2
    assert all("--grid model.init_args.difference_bound=" in c for c in searches if "eg_" in c)
    lambdas = [c for c in reports if "grad_lambda" in c]
    bounds = [c for c in reports if "eg_bound" in c]
    assert len(lambdas) == 6 and all("--model.init_args.lambda_=" in c for c in lambdas)
    # the curve keeps the searched adversary steps
    assert all(c.endswith("--model.init_args.adversary_steps=3") for c in lambdas)
    assert len(bounds) == 4 and all(
        "eg_logistic_german.yaml --model.init_args.difference_bound=" in c for c in bounds
    )
    assert len(calls) == 7 + 2 + 6 + 4
    # a second run keeps every finished search and report
    assert run_script(fake_python, tmp_path, "german") == []


def test_adult_bounds_discrimination_and_searches_the_slow_method_on_one_seed(
    fake_python, tmp_path
):
    calls = run_script(fake_python, tmp_path, "adult")
    searches = [c for c in calls if "fair_search" in c]
    fair = [c for c in searches if "vanilla" not in c]
    assert all("--rule accuracy --max_discrimination 0.036" in c for c in fair)
    assert all("--seeds 100 " in c + " " and "101" not in c for c in fair if "eg_" in c)


def test_committed_choices_skip_the_searches(fake_python, tmp_path):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    for stem in ("vanilla", "grad_pred", "grad_auto_{}_classifier", "lfr", "alfr"):
        stem = stem.format("compas") if "{}" in stem else f"{stem}_compas"
        (chosen / f"{stem}_chosen.json").write_text("{}")
    for stem in ("eg_logistic_compas", "eg_mlp_compas"):
        (chosen / f"{stem}_chosen.json").write_text("{}")
    calls = run_script(fake_python, tmp_path, "compas", SEARCH=str(chosen))
    assert not any("fair_search" in c for c in calls)
    assert str(chosen / "grad_pred_compas_chosen.json") in calls[0]


def test_an_unknown_data_set_is_refused():
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "fair_tradeoff.sh"), "mnist"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "adult, german or compas" in done.stderr

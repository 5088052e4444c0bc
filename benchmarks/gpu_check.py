"""GPU check: the papers' models at paper size on one GPU, with no data download.

One script for the day a GPU is lent (under 8 minutes on one GPU). Synthetic batches of the
real shapes; the command-line runs read generated files in the real on-disk formats (CIFAR-10
and CIFAR-100 pickles, SVHN ``.mat``; Adult ships with lit_rev), since a GPU machine may have
no network either. It prints a table and writes one JSON (``--json``) of:

* ``glow``: Glow at paper size (CIFAR-10: 3 levels x 32 steps, width 512, batch 64): training
  img/s in float32, in bf16-mixed (autocast) and compiled (``CompileNetwork``, float32);
* ``pixelcnn``: PixelCNN++ at paper size (160 filters, 5 resnets per scale, 10 mixtures,
  batch 16): training step time in float32 and bf16-mixed;
* ``revnet``: RevNet-110 (memory-saving and plain) against ResNet-110 at batch 128: peak
  allocated CUDA memory of a training step above the model's own (memcnn's published table:
  706 MB for RevNet-110 against 1357 MB for ResNet-110), the bytes autograd saves for the
  backward (``SavedTensorMeter``; the only memory number on CPU) and the step time;
* ``cli``: ``python -m lit_rev fit`` for 20 steps of the three papers' main configs
  (``density/glow_cifar10``, ``revnet/revnet110_cifar10``, ``fair/grad_pred_adult``) with
  ``--trainer.accelerator=gpu``: exit status and wall time.

``--cpu --tiny`` runs all of it in seconds on a CPU with tiny networks and batches (the tests do
so, so that the script cannot rot); ``--sections`` picks parts.

    python benchmarks/gpu_check.py                        # on the GPU, paper sizes
    python benchmarks/gpu_check.py --cpu --tiny --json /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_rev.data.synthetic_files import write_cifar, write_svhn

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("glow", "pixelcnn", "revnet", "cli")
CLI_CONFIGS = (
    "density/glow_cifar10.yaml",
    "revnet/revnet110_cifar10.yaml",
    "fair/grad_pred_adult.yaml",
)


# --- timing ---------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``steps`` calls of ``step()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def training_step(module, loss_fn, bf16: bool, device: torch.device):
    """A closure: forward (bf16 autocast or not), backward and an SGD step of ``module``."""
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-5)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            loss = loss_fn(module)
        loss.float().backward()
        optimizer.step()

    return step


# --- sections -------------------------------------------------------------------------------
def glow_rows(device, tiny: bool, steps: int, warmup: int) -> list[dict]:
    """Glow training img/s: float32, bf16-mixed, compiled."""
    from lit_rev.callbacks import CompileNetwork
    from lit_rev.density import DensityModule
    from lit_rev.density.glow import Glow

    size = (
        dict(in_channels=3, image_size=8, levels=2, steps=2, hidden_channels=8)
        if tiny
        else dict(in_channels=3, image_size=32, levels=3, steps=32, hidden_channels=512)
    )
    batch = 4 if tiny else 64
    torch.manual_seed(0)
    module = DensityModule(Glow(**size)).to(device)
    k = torch.randint(0, 256, (batch, 3, size["image_size"], size["image_size"]), device=device)

    def loss_fn(m):
        return m.scores(k, noise=True)["bpd"].mean()

    rows = []
    for variant in ("float32", "bf16-mixed", "compiled"):
        net = module if variant != "compiled" else copy.deepcopy(module)
        if variant == "compiled":
            CompileNetwork().compile(net)
        seconds = timed_steps(
            training_step(net, loss_fn, variant == "bf16-mixed", device), steps, warmup, device
        )
        rows.append(row("glow", f"Glow {variant}", "img/s", batch / seconds, size=size))
    return rows


def pixelcnn_rows(device, tiny: bool, steps: int, warmup: int) -> list[dict]:
    """PixelCNN++ training step time, float32 and bf16-mixed."""
    from lit_rev.density import DensityModule
    from lit_rev.density.pixelcnnpp import PixelCNNPP

    size = (
        dict(in_channels=3, image_size=8, resnets_per_scale=1, filters=8, num_mixtures=2)
        if tiny
        else dict(in_channels=3, image_size=32, resnets_per_scale=5, filters=160, num_mixtures=10)
    )
    batch = 2 if tiny else 16
    torch.manual_seed(0)
    module = DensityModule(PixelCNNPP(**size, dropout=0.5)).to(device)
    k = torch.randint(0, 256, (batch, 3, size["image_size"], size["image_size"]), device=device)

    def loss_fn(m):
        return m.scores(k, noise=True)["bpd"].mean()

    return [
        row(
            "pixelcnn",
            f"PixelCNN++ {variant}",
            "s/step",
            timed_steps(
                training_step(module, loss_fn, variant != "float32", device), steps, warmup, device
            ),
            size=size,
            batch=batch,
        )
        for variant in ("float32", "bf16-mixed")
    ]


def revnet_rows(device, tiny: bool, steps: int, warmup: int) -> list[dict]:
    """RevNet-110 (memory-saving, plain) and ResNet-110: peak memory, saved bytes, step time."""
    from lit_rev.revnet import ImageClassifier, SavedTensorMeter
    from lit_rev.revnet.networks import resnet110, revnet110

    extra = {"units": [2, 2, 2]} if tiny else {}
    batch, side = (4, 8) if tiny else (128, 32)
    x = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rows = []
    for name, build, saving in (
        ("RevNet-110 memory-saving", revnet110, True),
        ("RevNet-110 plain", revnet110, False),
        ("ResNet-110", resnet110, False),
    ):
        torch.manual_seed(0)
        module = ImageClassifier(build(memory_saving=saving, **extra)).to(device)
        with SavedTensorMeter(module) as meter:
            loss = F.cross_entropy(module(x), y)
        loss.backward()
        del loss
        step = training_step(module, lambda m: F.cross_entropy(m(x), y), False, device)
        peak_mb = None
        if device.type == "cuda":
            step()  # gradients and optimiser state exist from here on
            synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            synchronize(device)
            peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 1e6
        seconds = timed_steps(step, steps, warmup, device)
        rows.append(row("revnet", name, "saved MB", meter.bytes / 1e6, batch=batch))
        rows.append(row("revnet", name, "peak MB", peak_mb, batch=batch))
        rows.append(row("revnet", name, "s/step", seconds, batch=batch))
        del module, step
    return rows


# --- the command-line runs on generated files -------------------------------------------------
#: Imported by the ``python -m lit_rev`` subprocesses (``sitecustomize`` on their PYTHONPATH):
#: torchvision's MD5 tables take the generated files' checksums, so the real loading code,
#: integrity check included, reads them.
ACCEPT_GENERATED_FILES = """
import hashlib, os
from pathlib import Path


def _md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _accept_generated_files(root):
    import torchvision.datasets as tvd

    for cls in (tvd.CIFAR10, tvd.CIFAR100):
        base = root / cls.base_folder
        if base.exists():
            cls.train_list = [[f, _md5(base / f)] for f, _ in cls.train_list]
            cls.test_list = [[f, _md5(base / f)] for f, _ in cls.test_list]
            cls.meta = {**cls.meta, "md5": _md5(base / cls.meta["filename"])}
    tvd.SVHN.split_list = {
        k: [u, f, _md5(root / f) if (root / f).exists() else m]
        for k, (u, f, m) in tvd.SVHN.split_list.items()
    }


if os.environ.get("LIT_REV_GPU_CHECK_DATA"):
    _accept_generated_files(Path(os.environ["LIT_REV_GPU_CHECK_DATA"]))
"""


def write_data(root: Path, tiny: bool) -> Path:
    """The generated data files and the ``sitecustomize`` that accepts them; returns its dir."""
    n_train, n_test = (40, 20) if tiny else (2000, 500)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_cifar(data, 10, n_train, n_test, seed=2)
    write_cifar(data, 100, n_train, n_test, seed=4)
    write_svhn(data, n_train, n_test, seed=3)
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(ACCEPT_GENERATED_FILES)
    return site


def tiny_overrides(config: str) -> list[str]:
    """Small networks and batches for ``--tiny`` (the full run keeps the configs' own)."""
    if config.startswith("density/"):
        net = "--model.init_args.network.init_args"
        return [
            f"{net}.steps=2",
            f"{net}.hidden_channels=8",
            "--data.init_args.batch_size=4",
            "--data.init_args.test_batch_size=4",
        ]
    if config.startswith("revnet/"):
        return [
            "--model.init_args.backbone.init_args.units=[2, 2, 2]",
            "--data.init_args.batch_size=4",
        ]
    return ["--data.init_args.batch_size=32"]


def cli_rows(device, tiny: bool, steps: int, root: Path, timeout: float) -> list[dict]:
    """``python -m lit_rev fit`` of each main config for ``steps`` steps: exit status, time."""
    site = write_data(root, tiny)
    env = {
        **os.environ,
        "LIT_REV_DATA": str(root / "data"),
        "LIT_REV_GPU_CHECK_DATA": str(root / "data"),
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    rows = []
    for config in CLI_CONFIGS:
        run = root / Path(config).stem
        run.mkdir(exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "lit_rev",
            "fit",
            "--config",
            str(REPO / "configs" / config),
            f"--trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
            "--trainer.devices=1",
            f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=2",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={run}",
            "--data.init_args.num_workers=0",
            "--torch_threads=1" if device.type == "cpu" else "--torch_threads=4",
            *(tiny_overrides(config) if tiny else []),
        ]
        start = time.perf_counter()
        try:
            done = subprocess.run(
                command, cwd=run, env=env, capture_output=True, text=True, timeout=timeout
            )
            code, tail = done.returncode, (done.stdout + done.stderr)[-2000:]
        except subprocess.TimeoutExpired:
            code, tail = "timeout", f"killed after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        rows.append(
            row(
                "cli",
                f"fit {config}",
                "s",
                seconds,
                exit=code,
                steps=steps,
                **({"output_tail": tail} if code != 0 else {}),
            )
        )
    return rows


# --- report ---------------------------------------------------------------------------------
def row(section: str, name: str, unit: str, value, **extra) -> dict:
    return {"section": section, "name": name, "unit": unit, "value": value, **extra}


def table(rows: list[dict]) -> str:
    """A plain-text table of the rows (section, what, value, unit, exit status of CLI runs)."""
    lines = [f"{'section':9s} {'what':40s} {'value':>12s}  unit"]
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:12.4g}"
        status = f"  exit {r['exit']}" if "exit" in r else ""
        lines.append(f"{r['section']:9s} {r['name']:40s} {value:>12s}  {r['unit']}{status}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the check; print the table, write the JSON; exit 1 if a CLI run failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu", action="store_true", help="run on the CPU even if a GPU is present"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny networks and batches (seconds)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--json", default="gpu_check.json", help="where the results go")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10, tiny 2)")
    parser.add_argument("--cli-steps", type=int, default=20, help="steps of each CLI fit run")
    parser.add_argument("--cli-timeout", type=float, default=300.0, help="seconds per CLI run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: pass --cpu (with --tiny for a quick run)")
    device = torch.device("cpu" if args.cpu else "cuda")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (2 if args.tiny else 10)
    warmup = 1 if args.tiny else 3
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for section in args.sections:
            if section == "glow":
                rows += glow_rows(device, args.tiny, steps, warmup)
            elif section == "pixelcnn":
                rows += pixelcnn_rows(device, args.tiny, steps, warmup)
            elif section == "revnet":
                rows += revnet_rows(device, args.tiny, steps, warmup)
            else:
                rows += cli_rows(device, args.tiny, args.cli_steps, Path(tmp), args.cli_timeout)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "tiny": args.tiny,
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(table(rows))
    print(f"{result['device']}, {result['seconds']:.0f} s; results in {args.json}")
    failed = [r for r in rows if r.get("exit", 0) != 0]
    for r in failed:
        print(
            f"\n{r['name']} failed (exit {r['exit']}):\n{r.get('output_tail', '')}", file=sys.stderr
        )
    if failed:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()

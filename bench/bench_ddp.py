"""Training over processes: `python bench/bench_ddp.py [--quick] [--device cpu|cuda]` (make bench runs it).

(a) samples/s: the same `lib train` run as 1 process and under `torchrun --standalone --nproc-per-node 2`,
    each timed as the whole process a user waits for, with the run's own samples/s (global batch, last
    epoch). Printed with the cores this machine gives: two processes only help when there are cores (or
    GPUs) for both; on CUDA each process takes one GPU, so 2 processes need 2 GPUs.
(b) all-reduce overhead per step, measured inside a 2-process group (this script under torchrun,
    `--worker`): the per-step metric collectives the engine adds (loss and image count before backward,
    the stop flag after the step), and DDP's gradient all-reduce (backward under DDP minus backward under
    `no_sync()`, same batch). gloo on CPU; NCCL for the gradients on CUDA.
Images are generated once under $TORCHSCOPE_BENCH_DATA (bench/_data.py). Figures depend on the machine:
run it where you quote it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _data import image_folder

from lib.data.sample import CLASSES, make_sample_image
from lib.settings import default_threads

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def timed(cmd: list[str]) -> tuple[float, dict]:
    """(wall seconds, the --json summary) of one whole command."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-1000:]}\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def bench_throughput(n: int, epochs: int, model: str, device: str, runs_dir: Path) -> None:
    data = image_folder(f"shapes-{n}-32px", n, CLASSES, lambda i, rng: make_sample_image(CLASSES[i % 4], rng, 32))
    args = ["-m", "lib", "train", str(data), "--model", model, "--epochs", str(epochs), "--batch-size", "128"]
    args += ["--device", device, "--runs-dir", str(runs_dir), "--json"]
    one_s, one = timed([sys.executable, *args])
    two_s, two = timed([*TORCHRUN, *args])
    print(f"(a) {model}, {n} images of 32 px, {epochs} epochs, global batch 128, {device}, {default_threads()} cores:")
    print(f"    1 process:   {one['samples_per_sec']:8.0f} samples/s, whole command {one_s:5.1f} s")
    print(f"    2 processes: {two['samples_per_sec']:8.0f} samples/s, whole command {two_s:5.1f} s")
    print(
        f"    ratio 2/1: {two['samples_per_sec'] / one['samples_per_sec']:.2f}x samples/s, "
        f"{one_s / two_s:.2f}x wall (val accuracy {one['val_accuracy']:.3f} vs {two['val_accuracy']:.3f})"
    )


def bench_overhead(model: str, device: str, steps: int) -> None:
    cmd = [*TORCHRUN, str(Path(__file__).resolve()), "--worker", "--model", model, "--device", device]
    done = subprocess.run([*cmd, "--steps", str(steps)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"(b) per step, 2 processes, {model} at batch 64 per rank, {r['backend']}, median of {steps} steps:")
    print(f"    step without sync {r['step_ms']:.2f} ms; metric collectives {r['metrics_ms']:.3f} ms")
    print(
        f"    gradient all-reduce {r['grad_ms']:.2f} ms ({r['params'] / 1e6:.2f} M parameters); "
        f"overhead {(r['metrics_ms'] + r['grad_ms']) / r['step_ms']:.0%} of the step"
    )


def worker(model_name: str, device_name: str, steps: int) -> None:
    """Inside torchrun: time one rank's step with and without DDP's gradient sync, and the metric collectives."""
    import torch
    import torch.nn.functional as F

    from lib.training import distributed
    from lib.training.loop import batch_loss
    from lib.training.models import build_model

    ctx = distributed.from_environment()
    device = ctx.place(torch.device(device_name))
    distributed.start(ctx, device)
    torch.manual_seed(0)
    model = build_model(model_name, 4, 32).to(device)
    ddp = ctx.wrap(model, device)
    x, y = torch.randn(64, 3, 32, 32, device=device), torch.randint(0, 4, (64,), device=device)

    def step(sync: bool) -> float:
        sync_ctx = ddp.no_sync() if not sync else torch.enable_grad()
        start = time.perf_counter()
        with sync_ctx:
            F.cross_entropy(ddp(x), y).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    def metrics() -> float:
        with torch.no_grad():
            out = model(x)  # (B, 4): the loss the engine all-reduces before backward
        start = time.perf_counter()
        batch_loss(out, y, ctx)
        ctx.any(False)
        return (time.perf_counter() - start) * 1000

    for _ in range(5):  # warm up: DDP builds its buckets on the first steps
        step(True), step(False)
    synced = statistics.median(step(True) for _ in range(steps))
    unsynced = statistics.median(step(False) for _ in range(steps))
    collectives = statistics.median(metrics() for _ in range(steps))
    params = sum(p.numel() for p in model.parameters())
    report = dict(step_ms=unsynced, grad_ms=max(0.0, synced - unsynced), metrics_ms=collectives, params=params)
    report["backend"] = "NCCL (gradients) + gloo" if device.type == "cuda" else "gloo"
    if ctx.is_main:
        print(json.dumps(report))
    distributed.finish(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute (default: off)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present, else cpu)")
    parser.add_argument("--model", default="cnn", help="the model of both benchmarks (default: cnn)")
    parser.add_argument("--worker", action="store_true", help="internal: one rank of benchmark (b)")
    parser.add_argument("--steps", type=int, default=30, help="internal: steps the worker times (default: 30)")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.worker:
        return worker(args.model, device, args.steps)
    print(f"torch {torch.__version__}, {default_threads()} CPU cores, CUDA devices: {torch.cuda.device_count()}")
    if device == "cuda" and torch.cuda.device_count() < 2:
        print("2 processes need 2 GPUs (NCCL gives each rank its own); only 1 here: measuring on the CPU.")
        device = "cpu"
    import tempfile

    with tempfile.TemporaryDirectory() as runs:
        bench_throughput(1000 if args.quick else 4000, 2, args.model, device, Path(runs))
    bench_overhead(args.model, device, 20 if args.quick else 50)


if __name__ == "__main__":
    main()

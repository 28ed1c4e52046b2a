"""Training benchmarks: `python bench/bench_train.py [--quick]` (make bench runs every bench/bench_*.py).

(a) time to result: `python -m lib train DIR --model linear --epochs 5` as a whole process (start-up,
    index, one decode, statistics, epochs, checkpoints, store) vs the plain torchvision recipe
    (bench/_recipe_train.py: ImageFolder + DataLoader decoding every epoch, same model and batch), also a
    whole process, on the same 20,000 32x32 PNGs (5,000 with --quick). Want ratio about 0.5.
(b) engine + store overhead: resnet18 samples/s through fit() writing every step to a run store vs a
    bare loop over pre-decoded tensors. Want ratio >= 0.9.
(c) page while training: median time of an AppTest run of pages/train.py and of one store read
    (run_view), idle vs while a trainer subprocess trains.
Images are generated once under $TORCHSCOPE_BENCH_DATA (bench/_data.py) (4 classes of 32x32 PNG shapes). Figures depend on the machine:
run it where you quote it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _data import image_folder

from lib.data.sample import CLASSES, make_sample_image
from lib.runs.store import RunStore
from lib.settings import default_threads
from lib.training.config import TrainConfig
from lib.training.engine import fit
from lib.training.models import build_model
from lib.training.trainer import StoreHooks

ROOT = Path(__file__).resolve().parent.parent


def make_images(n: int, size: int = 32) -> Path:
    """n PNGs of the sample's shapes, size x size, in an ImageFolder of 4 classes, written once."""
    return image_folder(f"shapes-{n}-{size}px", n, CLASSES, lambda i, rng: make_sample_image(CLASSES[i % 4], rng, size))


def whole_process(cmd: list[str]) -> tuple[float, dict]:
    """Wall seconds of one process, from start to exit, and the JSON object of its last stdout line."""
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def bench_time_to_result(n: int, epochs: int, repeats: int) -> None:
    """`python -m lib train` against the plain recipe (bench/_recipe_train.py), each a whole process, alternating;
    the page cache is warm for both (the files were read once first), the best of `repeats` counts for each."""
    root = make_images(n)
    for path in root.rglob("*.png"):
        path.read_bytes()
    runs = tempfile.mkdtemp(prefix="bench-runs-")
    ours_cmd = [sys.executable, "-m", "lib", "train", str(root), "--model", "linear", "--epochs", str(epochs)]
    ours_cmd += ["--batch-size", "64", "--runs-dir", runs, "--json"]
    recipe_cmd = [sys.executable, str(ROOT / "bench" / "_recipe_train.py"), str(root), "--epochs", str(epochs)]
    ours, recipe = [], []
    for _ in range(repeats):
        ours.append(whole_process(ours_cmd))
        recipe.append(whole_process(recipe_cmd))
    (t_ours, summary), (t_recipe, plain) = min(ours, key=lambda r: r[0]), min(recipe, key=lambda r: r[0])
    phases = ", ".join(f"{k} {v:.2f}" for k, v in summary["timings"].items())
    print(
        f"(a) {n:,} images 32x32 PNG, {epochs} epochs of linear, batch 64, whole processes, best of {repeats}: "
        f"python -m lib train {t_ours:.1f} s (val acc {summary['val_accuracy']:.1%}; {phases}), "
        f"ImageFolder + DataLoader recipe {t_recipe:.1f} s (val acc {plain['val_accuracy']:.1%}, its epochs "
        f"{plain['epochs_seconds']:.1f} s); ratio {t_ours / t_recipe:.2f} (want about 0.5)"
    )


def bare_samples_per_sec(images: torch.Tensor, targets: torch.Tensor, batch: int, batches: int) -> float:
    """resnet18 on pre-decoded tensors (one warm-up pass, one timed): the floor the engine is measured against."""
    torch.manual_seed(0)
    model = build_model("resnet18", 4, images.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    x = images.float().div(255)
    for _pass in ("warm-up", "timed"):
        start = time.perf_counter()
        for i in range(batches):
            j = (i * batch) % (len(x) - batch)
            optimizer.zero_grad()
            F.cross_entropy(model(x[j : j + batch]), targets[j : j + batch]).backward()
            optimizer.step()
    return batches * batch / (time.perf_counter() - start)


def bench_overhead(batches: int, repeats: int) -> None:
    """Engine and bare loop alternate `repeats` times and the best of each counts: a shared, noisy machine
    slows whichever happens to run during a burst, and the best pass is the closest to the hardware."""
    from lib.data.index import build_index
    from lib.training.batches import decode_images

    index = build_index(str(make_images(4000)))
    batch = 32
    samples = index.samples[: int(batches * batch / 0.8) + 64]
    images = decode_images([p for p, _ in samples], 32)
    targets = torch.tensor([t for _, t in samples])
    store = RunStore(tempfile.mkdtemp(prefix="bench-store-"))
    config = TrainConfig(
        model="resnet18", epochs=2, batch_size=batch, image_size=32, max_batches=batches, normalization="none"
    )  # the bare loop's inputs: [0, 1], no normalization
    ours, bare = [], []
    for _ in range(repeats):
        run_id = store.create_run(config.to_dict(), pid=os.getpid())
        result = fit(config, samples, index.classes, StoreHooks(store, run_id))
        ours.append(result.epochs[-1]["samples_per_sec"])  # epoch 2: warmed up; every step written to the store
        bare.append(bare_samples_per_sec(images, targets, batch, batches))
    print(
        f"(b) resnet18 @32px, batch {batch}, {batches} batches, best of {repeats} alternating: engine+store "
        f"{max(ours):.1f} samples/s, bare loop on decoded tensors {max(bare):.1f} samples/s; "
        f"ratio {max(ours) / max(bare):.2f} (want >= 0.9)"
    )


def page_times(repeats: int, store: RunStore) -> tuple[float, float]:
    """Median seconds of an AppTest run of the Train page, and of one run_view store read."""
    from streamlit.testing.v1 import AppTest

    from lib.runs.view import run_view

    runs = store.list_runs()
    page, read = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=60)
        start = time.perf_counter()
        at.run()
        page.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_view(store, runs[0].id)
        read.append(time.perf_counter() - start)
    return statistics.median(page), statistics.median(read)


def bench_page(repeats: int) -> None:
    from lib.training.runner import start_run, stop_run

    runs_dir = tempfile.mkdtemp(prefix="bench-runs-")
    os.environ["TORCHSCOPE_RUNS_DIR"] = runs_dir
    store = RunStore(runs_dir)
    done = store.create_run({"model": "cnn", "epochs": 10, "batch_size": 64}, pid=os.getpid())
    for step in range(1, 2001):  # a finished run with 2,000 steps to draw
        store.record_step(done, step, (step - 1) // 200 + 1, 2.0 / step**0.3, 1e-3, 500.0)
    store.finish(done, "completed")
    page_times(1, store)  # warm-up: imports
    idle_page, idle_read = page_times(repeats, store)
    config = TrainConfig(model="cnn", epochs=100, image_size=32)
    run_id = start_run(config, make_images(4000), store, "bench")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and store.steps(run_id).empty:
        time.sleep(0.1)  # a benchmark, not a test: poll until the trainer is in its loop
    busy_page, busy_read = page_times(repeats, store)
    stop_run(run_id, store)
    while time.monotonic() < deadline + 60 and store.get_run(run_id).status == "running":
        time.sleep(0.1)
    print(
        f"(c) Train page (AppTest run, median of {repeats}): idle {idle_page * 1000:.0f} ms, while a cnn trains "
        f"{busy_page * 1000:.0f} ms (x{busy_page / idle_page:.1f}); store read (run_view): idle "
        f"{idle_read * 1000:.1f} ms, training {busy_read * 1000:.1f} ms (x{busy_read / idle_read:.1f}); "
        f"{default_threads()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute (default: off)")
    parser.add_argument("--only", choices=("a", "b", "c"), default=None, help="run one benchmark (default: all)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="(a): whole processes of each side (default: 3, 2 with --quick)"
    )
    args = parser.parse_args()
    torch.set_num_threads(default_threads())
    print(f"torch {torch.__version__}, {default_threads()} CPU threads, cuda: {torch.cuda.is_available()}")
    if not args.only or args.only == "a":
        bench_time_to_result(5000 if args.quick else 20_000, 5, args.repeats or (2 if args.quick else 3))
    if not args.only or args.only == "b":
        bench_overhead(8 if args.quick else 25, 2 if args.quick else 3)
    if not args.only or args.only == "c":
        bench_page(3 if args.quick else 7)


if __name__ == "__main__":
    main()

"""Evaluate's two costs: predicting, and a page rerun once predictions are stored.

(a) `predict_tensors` (what `predict` runs per chunk: prepare, model, log-softmax, top-k, loss, all
    kept) over N decoded validation images vs a bare `model(x)` loop over the same uint8 tensors
    (scaled and normalized, nothing kept). Want: at most 1.2x.
(b) The Evaluate page's rerun under AppTest with stored predictions of 1,000 vs 20,000 validation
    images (10 classes). Want: about the same (heatmap, tables and galleries do not grow with N).
Run: .venv/bin/python bench/bench_evaluate.py [--quick]   (--quick: 2,000 images in (a))
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _data import image_folder, noise

from lib.evaluation.predictions import Predictions, checkpoint_key, predict_tensors
from lib.pixels.transforms import normalize
from lib.runs.store import RunStore
from lib.training.batches import batch_preparer
from lib.training.models import build_model

REPO = Path(__file__).resolve().parents[1]

MEAN_STD = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
CLASSES = [f"class_{c:02d}" for c in range(10)]


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def predict_vs_bare(n: int, size: int = 32, batch: int = 256, rounds: int = 3) -> tuple[float, float]:
    """(predict_tensors seconds, bare loop seconds) over n random uint8 images through the cnn, per pass.

    Timed batch by batch, the two alternating on the same batch (which goes first alternates too), summed
    over `rounds` passes: on a shared machine the CPU's speed drifts by a third between whole passes (the
    same bare loop read 2.97 s and 4.47 s back to back), and only a fine interleave lets both see the same.
    """
    torch.manual_seed(0)
    model = build_model("cnn", len(CLASSES), size).eval()
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    targets = torch.randint(0, len(CLASSES), (n,))
    prepare = batch_preparer(torch.device("cpu"), MEAN_STD, None)

    def bare(x, _y) -> None:
        with torch.no_grad():
            model(normalize(x.float() / 255, *MEAN_STD))

    def ours(x, y) -> None:
        predict_tensors(model, x, y, prepare, batch, len(CLASSES))

    chunks = list(zip(images.split(batch), targets.split(batch)))
    ours(*chunks[0]), bare(*chunks[0])  # warm
    total = {ours: 0.0, bare: 0.0}
    for i in range(rounds * len(chunks)):
        x, y = chunks[i % len(chunks)]
        for fn in (ours, bare) if i % 2 else (bare, ours):
            t0 = time.perf_counter()
            fn(x, y)
            total[fn] += time.perf_counter() - t0
    return total[ours] / rounds, total[bare] / rounds


def stored_run(runs: Path, root: Path, n: int) -> str:
    """A run whose checkpoint and stored predictions (n images, 10 classes) are in place: no model runs."""
    store = RunStore(runs)
    run_id = store.create_run({"model": "cnn", "image_size": 32}, root=str(root), classes=CLASSES)
    store.files.save_checkpoint(run_id, {"config": {}, "classes": CLASSES})  # only its key matters here
    store.finish(run_id, "completed")
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), targets] += 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    order = np.argsort(-probs, 1)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    by_class = {c: [f for f in files if f.startswith(c + "/")] for c in CLASSES}
    paths = np.array([by_class[CLASSES[t]][i % len(by_class[CLASSES[t]])] for i, t in enumerate(targets)])
    preds = Predictions(run_id, "last", checkpoint_key(store, run_id), CLASSES, paths, targets, probs.argmax(1),
                        -np.log(probs[np.arange(n), targets]).astype(np.float32), order,
                        np.take_along_axis(probs, order, 1).astype(np.float32))  # fmt: skip
    store.files.save_predictions(run_id, preds.to_arrays())
    return run_id


def page_rerun(runs: Path, root: Path, repeats: int = 5) -> tuple[float, float]:
    """(first visit, best warm rerun) of the Evaluate page in seconds, predictions stored."""
    from streamlit.testing.v1 import AppTest

    os.environ["TORCHSCOPE_RUNS_DIR"] = str(runs)
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.query_params.update(source="folder", path=str(root))
    at.run()
    t0 = time.perf_counter()
    at.switch_page("pages/evaluate.py").run()
    first = time.perf_counter() - t0
    assert not at.exception and not at.error, (at.exception, at.error)
    return first, best_of(at.run, repeats)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="2,000 images in (a) instead of 10,000 (default: off)")
    n = 2_000 if args.parse_args().quick else 10_000
    os.environ.setdefault("TORCHSCOPE_CACHE_DIR", tempfile.mkdtemp(prefix="torchscope-bench-cache-"))
    ours, bare = predict_vs_bare(n)
    print(f"(a) {n:,} images, cnn 32 px, batch 256, {torch.get_num_threads()} threads: predict_tensors "
          f"{ours:.2f} s vs bare model(x) loop {bare:.2f} s -> {ours / bare:.2f}x (want <= 1.2)")  # fmt: skip
    root = image_folder("imagefolder-500-32", 500, CLASSES, noise(32))
    times = {}
    for count in (1_000, 20_000):
        runs = Path(tempfile.mkdtemp(prefix=f"torchscope-bench-runs-{count}-"))
        stored_run(runs, root, count)
        times[count] = page_rerun(runs, root)
        print(f"(b) {count:>6,} predictions: first visit {times[count][0]:.2f} s, "
              f"warm rerun {times[count][1] * 1000:.0f} ms")  # fmt: skip
    print(f"(b) warm Evaluate rerun, 20,000 / 1,000 images: {times[20_000][1] / times[1_000][1]:.2f}x (want near 1)")


if __name__ == "__main__":
    main()

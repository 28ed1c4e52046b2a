"""The Runs page with 200 runs of 2,000 steps each: how long a rerun takes, and why it reads summaries.

Builds a run store of RUNS runs x STEPS steps (10 epochs each) once, then times under AppTest:
  (a) a warm rerun of the page with nothing selected (the table, filters, summaries);
  (b) a warm rerun with 3 runs selected (adds their overlaid curves, parallel coordinates, scatter, diff);
and, as the obvious alternative, building the same table by reading every run's steps and epochs
(what a page that loads all metrics would pay before drawing anything).
Want: (a) and (b) well under a second; the alternative many times slower.
Run: .venv/bin/python bench/bench_runs_page.py [--quick]   (--quick: 50 runs)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from _data import data_dir

from lib.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]
STEPS, EPOCHS = 2000, 10


def build_store(n_runs: int) -> Path:
    """A runs folder of n_runs finished runs (lr, batch size and model varying), made once and reused."""
    folder = data_dir() / f"runs-{n_runs}x{STEPS}"
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    store = RunStore(folder)
    for i in range(n_runs):
        lr, batch = 10 ** (-4 + 3 * (i % 7) / 6), (16, 32, 64)[i % 3]
        config = {"model": ("mlp", "cnn", "linear")[i % 3], "lr": lr, "batch_size": batch, "epochs": EPOCHS, "seed": i}
        row = {"id": f"20260101-000000-{i:06x}", "name": f"run {i}", "created": 1.7e9 + i, "config": json.dumps(config)}
        row.update(status="completed", classes='["a", "b"]', root="/data/bench", ended=1.7e9 + i + 60, message="")
        steps = [
            (row["id"], s, 1 + (s - 1) * EPOCHS // STEPS, 2 * math.exp(-lr * s) + 0.01 * (s % 13), lr, 500.0 + s % 50)
            for s in range(1, STEPS + 1)
        ]
        epochs = [
            (row["id"], e, 1 / e, 1 / e + lr, min(1.0, 0.5 + e * lr * 10), lr, 520.0) for e in range(1, EPOCHS + 1)
        ]
        store.insert_runs([row], steps, epochs, {})
    (folder / ".complete").touch()
    return folder


def rerun_time(at, repeats: int = 5) -> float:
    """Best of `repeats` warm reruns, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    return min(times)


def all_steps_table(folder: Path) -> float:
    """The obvious alternative: the same per-run figures computed after loading every step and epoch."""
    t0 = time.perf_counter()
    store = RunStore(folder)
    rows = []
    for r in store.list_runs():
        steps, epochs = store.steps(r.id), store.epochs(r.id)
        rows.append((r.id, steps["step"].max(), epochs["val_accuracy"].max(), epochs["val_loss"].min()))
    return time.perf_counter() - t0


def main() -> None:
    from streamlit.testing.v1 import AppTest

    n_runs = 50 if "--quick" in sys.argv else 200
    folder = build_store(n_runs)
    os.environ["TORCHSCOPE_RUNS_DIR"] = str(folder)
    at = AppTest.from_file(str(REPO / "pages" / "runs.py"), default_timeout=600)
    at.session_state["session_id"] = "0" * 32
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    plain = rerun_time(at)
    at.session_state["runs_table"] = {"selection": {"rows": [0, 1, 2], "columns": []}}
    at.run()
    assert len(at.get("vega_lite_chart")) == 5, "the three selected runs should draw five charts"
    selected = rerun_time(at)
    alternative = all_steps_table(folder)
    print(f"{n_runs} runs x {STEPS:,} steps ({n_runs * STEPS:,} step rows)")
    print(f"first visit:                     {first * 1000:7.0f} ms")
    print(f"warm rerun, nothing selected:    {plain * 1000:7.0f} ms")
    print(f"warm rerun, 3 runs selected:     {selected * 1000:7.0f} ms")
    print(f"alternative (read every step):   {alternative * 1000:7.0f} ms  (table data only, nothing drawn)")
    print(f"ratio rerun / alternative:        {plain / alternative:.2f}x")


if __name__ == "__main__":
    main()

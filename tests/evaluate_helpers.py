"""Shared by the evaluation tests: one short run trained headless on a copy of the sample."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from lib.data.sample import sample_root

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--model", "cnn", "--epochs", "1", "--batch-size", "32", "--image-size", "16"]


def train_short_run(base: Path, *, leave_out: int = 0) -> tuple[str, Path, Path]:
    """One epoch of a small cnn on a copy of the sample, validated on its whole split (no batch limit).

    leave_out: images of the first class (circle) not copied, e.g. 5 for a split of 127, not 128, images.

    Returns (run_id, dataset folder, runs folder)."""
    data, runs = base / "data", base / "runs"
    shutil.copytree(sample_root(), data)
    for path in sorted((data / "circle").iterdir())[:leave_out]:
        path.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "lib", "train", str(data), *TRAIN, "--runs-dir", str(runs), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["run_id"], data, runs

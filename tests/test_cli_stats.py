"""`python -m lib stats` as a user runs it: a subprocess, JSON out, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.images import load_rgb

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cache):
    env = {**os.environ, "TORCHSCOPE_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "lib", "stats", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def _dataset(root: Path) -> list[str]:
    rng = np.random.default_rng(5)
    paths = []
    for c, (w, h, mode) in enumerate([(20, 12, "RGB"), (9, 31, "L"), (16, 16, "RGBA")]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
            path = root / f"class{c}" / f"{i}.png"
            Image.fromarray(arr.squeeze(), mode).save(path)
            paths.append(str(path))
    return paths


def test_json_matches_numpy_reference(tmp_path):
    paths = _dataset(tmp_path / "data")
    r = _run(str(tmp_path / "data"), "--json", cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"mean", "std", "min", "max", "num_images", "num_pixels", "nan_count", "inf_count"} <= out.keys()
    px = np.concatenate([np.asarray(load_rgb(p), dtype=np.float64).reshape(-1, 3) / 255 for p in paths])
    assert len(out["mean"]) == len(out["std"]) == 3
    np.testing.assert_allclose(out["mean"], px.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(out["std"], px.std(axis=0), atol=1e-12)
    np.testing.assert_allclose(out["min"], px.min(axis=0), atol=1e-12)
    np.testing.assert_allclose(out["max"], px.max(axis=0), atol=1e-12)
    assert (out["num_images"], out["num_pixels"], out["nan_count"], out["inf_count"]) == (9, len(px), 0, 0)


def test_size_option_and_text_output(tmp_path):
    _dataset(tmp_path / "data")
    r = _run(str(tmp_path / "data"), "--size", "8", "--json", cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["num_pixels"] == 9 * 8 * 8
    text = _run(str(tmp_path / "data"), cache=tmp_path / "cache")
    assert text.returncode == 0 and "9 images" in text.stdout and "mean" in text.stdout


def test_errors_are_one_line_exit_2(tmp_path):
    for args in ([str(tmp_path / "missing")], [str(tmp_path), "--size", "2"]):
        r = _run(*args, cache=tmp_path / "cache")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_a_file_that_fails_to_decode_is_listed_and_left_out(tmp_path):
    paths = _dataset(tmp_path / "data")
    broken = tmp_path / "data" / "class0" / "broken.png"
    broken.write_bytes(Path(paths[0]).read_bytes()[:60])  # a PNG header and no pixels
    r = _run(str(tmp_path / "data"), "--json", cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    px = np.concatenate([np.asarray(load_rgb(p), dtype=np.float64).reshape(-1, 3) / 255 for p in paths])
    np.testing.assert_allclose(out["mean"], px.mean(axis=0), atol=1e-12)
    assert out["num_images"] == 9 and [f["path"] for f in out["failed"]] == [str(broken)]
    text = _run(str(tmp_path / "data"), cache=tmp_path / "cache")
    assert "failed: class0/broken.png" in text.stderr and "Traceback" not in text.stderr


def test_workers_fork_only_in_a_lone_process_without_torch():
    probe = (
        "import sys, threading\n"
        "from lib.pixels.stats import worker_pool\n"
        "if sys.argv[1] == 'torch': import torch\n"
        "if sys.argv[1] == 'thread': threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
        "print(worker_pool(2)._mp_context.get_start_method())\n"
    )
    methods = [
        subprocess.run([sys.executable, "-c", probe, case], cwd=REPO, capture_output=True, text=True, timeout=120)
        for case in ("alone", "torch", "thread")
    ]
    assert [m.stdout.strip() for m in methods] == ["fork", "forkserver", "forkserver"], [m.stderr for m in methods]

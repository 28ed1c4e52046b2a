"""How much build_index costs over the least any header index must do: walk the tree, open each header.

Run: `python bench/bench_index.py` (or `make bench`). Generates 1,000 and 20,000 small images once
under the cache folder (TORCHSCOPE_CACHE_DIR), then times, in this process and on a warm file cache,
`build_index` against a bare loop of os.walk + PIL.Image.open(...).size/.mode. Each is run three times,
interleaved, after a warm-up pass, and the best time is kept.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like `make bench`

from lib.data.index import build_index  # noqa: E402
from lib.settings import cache_dir  # noqa: E402

SIZES = (1_000, 20_000)
CLASSES = 10
VERSION = 1


def dataset(n: int) -> Path:
    """n 32x32 images (PNG and JPEG alternating) in CLASSES folders, made once and reused."""
    root = cache_dir() / "bench" / f"index-{n}-v{VERSION}"
    if (root / ".complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=root.parent))
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = tmp / f"class{i % CLASSES}"
        folder.mkdir(exist_ok=True)
        img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        img.save(folder / f"{i:06d}.{'png' if i % 2 else 'jpg'}", compress_level=1)
    (tmp / ".complete").touch()
    shutil.rmtree(root, ignore_errors=True)
    os.rename(tmp, root)
    return root


def bare_loop(root: Path) -> int:
    """The floor: walk, then open each header and read its size and mode."""
    n = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.startswith("."):
                continue
            with Image.open(os.path.join(dirpath, name)) as img:
                img.size, img.mode  # noqa: B018 - reading them is the point
            n += 1
    return n


def best_of(fns: dict, root: Path, runs: int = 3) -> dict[str, float]:
    """Best of `runs` runs of each, interleaved so that a busy machine slows all of them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(root)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, Pillow {Image.__version__}")
    for n in SIZES:
        root = dataset(n)
        bare_loop(root)  # warm the file cache for both
        assert build_index(str(root)).num_images == n == bare_loop(root)
        t = best_of({"bare": bare_loop, "index": lambda r: build_index(str(r))}, root)
        print(
            f"{n:>6,} images: bare loop {t['bare']:6.3f} s, build_index {t['index']:6.3f} s, "
            f"ratio build_index / bare loop {t['index'] / t['bare']:4.2f}"
        )


if __name__ == "__main__":
    main()

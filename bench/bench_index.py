"""How much build_index costs over the least any header index must do: walk the tree, open each header.

Run: `python bench/bench_index.py` (or `make bench`). Generates 1,000 and 20,000 small images once
under $TORCHSCOPE_BENCH_DATA (bench/_data.py), then times, in this process and on a warm file cache,
`build_index` against a bare loop of os.walk + PIL.Image.open(...).size/.mode. Each is run three times,
interleaved, after a warm-up pass, and the best time is kept.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from _data import image_folder, noise
from PIL import Image

from lib.data.index import build_index

SIZES = (1_000, 20_000)
CLASSES = 10
VERSION = 1


def dataset(n: int) -> Path:
    """n 32x32 random images (PNG and JPEG alternating) in CLASSES folders, made once and reused."""
    classes = [f"class{c}" for c in range(CLASSES)]
    return image_folder(f"index-{n}-v{VERSION}", n, classes, noise(32), lambda i: ".png" if i % 2 else ".jpg")


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

"""How the Dataset page's cost grows with the dataset: 1,000 vs 20,000 images.

Times a warm rerun of the page (index cached, as after the first visit) under AppTest, and
the cold first visit (which includes indexing the headers). Want: the warm ratio near 1.
Run: .venv/bin/python bench/bench_dataset_page.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from _data import image_folder, noise

REPO = Path(__file__).resolve().parents[1]


def generated_folder(n: int, classes: int = 10, size: int = 32) -> Path:
    """n small random PNGs in `classes` class folders, written once and reused."""
    return image_folder(f"imagefolder-{n}-{size}", n, [f"class_{c:02d}" for c in range(classes)], noise(size))


def page_times(root: Path, repeats: int = 5) -> tuple[float, float]:
    """(first visit, best warm rerun) of the Dataset page on root, in seconds."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.query_params.update(source="folder", path=str(root))
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t0)
    return first, min(warm)


def main() -> None:
    os.environ.setdefault("TORCHSCOPE_CACHE_DIR", tempfile.mkdtemp(prefix="torchscope-bench-cache-"))
    results = {}
    for n in (1_000, 20_000):
        results[n] = page_times(generated_folder(n))
        print(f"{n:>6} images: first visit {results[n][0]:.2f} s, warm rerun {results[n][1] * 1000:.0f} ms")
    ratio = results[20_000][1] / results[1_000][1]
    print(f"warm page cost, 20,000 / 1,000 images: {ratio:.2f}x (want near 1; the data grew 20x)")


if __name__ == "__main__":
    main()

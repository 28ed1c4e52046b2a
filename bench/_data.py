"""Benchmark data, shared by every bench/bench_*.py: folders of generated images, written once and reused.

They live under $TORCHSCOPE_BENCH_DATA (default: <tmp>/torchscope-bench). Each folder is built in a
temporary folder and renamed into place (lib.data.folders.publish_folder), so an interrupted or
concurrent benchmark never sees half a dataset.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.folders import publish_folder

DATA_ENV = "TORCHSCOPE_BENCH_DATA"
MARKER = ".complete"


def data_dir() -> Path:
    """The folder holding every benchmark dataset."""
    return Path(os.environ.get(DATA_ENV) or Path(tempfile.gettempdir()) / "torchscope-bench")


def image_folder(
    name: str,
    n: int,
    classes: Sequence[str],
    image: Callable[[int, np.random.Generator], Image.Image],
    suffix: Callable[[int], str] = lambda i: ".png",
) -> Path:
    """An ImageFolder of n images, image i = image(i, rng) in class classes[i % len(classes)]; made once.

    Returns:
        data_dir() / name, complete (it holds MARKER).
    """
    root = data_dir() / name

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(0)
        for c in classes:
            (tmp / c).mkdir()
        for i in range(n):
            image(i, rng).save(tmp / classes[i % len(classes)] / f"{i:06d}{suffix(i)}", compress_level=1)
        (tmp / MARKER).touch()

    if not (root / MARKER).is_file():
        publish_folder(root, build, MARKER)
    return root


def noise(size: int = 32) -> Callable[[int, np.random.Generator], Image.Image]:
    """Uniform random RGB images of size x size."""
    return lambda i, rng: Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")

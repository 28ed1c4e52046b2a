"""A small ImageFolder with planted faults, for the health tests (tests/test_health*.py, the page's tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_COLOR = {"a": (200, 40, 40), "b": (40, 200, 40), "c": (40, 40, 200)}
PER_CLASS = 16


def blobs(rng: np.random.Generator, color, side: int = 32) -> Image.Image:
    """A smooth picture: the class colour shaded by eight random Gaussian blobs (a distinct perceptual hash)."""
    y, x = np.mgrid[0:side, 0:side] / side
    shade = np.zeros((side, side))
    for _ in range(8):
        cy, cx, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.06, 0.2)
        shade += rng.choice([-1, 1]) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * w**2))
    pixels = np.array(color, dtype=np.float64) * (0.6 + 0.3 * np.tanh(shade))[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def planted_folder(root: Path) -> dict:
    """3 classes of PER_CLASS clean images, plus the faults; returns what was planted (relative paths)."""
    rng = np.random.default_rng(7)
    for name, color in CLASS_COLOR.items():
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            blobs(rng, color).save(root / name / f"{name}{i:02}.png")
    a0 = Image.open(root / "a" / "a00.png")
    a0.save(root / "a" / "resaved.png", compress_level=1)  # other bytes, same pixels
    shutil.copy(root / "a" / "a01.png", root / "b" / "copied_from_a.png")  # a cross-class copy
    noisy = np.asarray(Image.open(root / "a" / "a02.png"), dtype=np.float64) + rng.normal(0, 2, (32, 32, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / "a" / "noisy.png")
    Image.open(root / "a" / "a03.png").save(root / "a" / "reencoded.jpg", quality=85)
    Image.open(root / "a" / "a04.png").resize((33, 33), Image.Resampling.BILINEAR).save(root / "a" / "bigger.png")
    for i in range(2):  # class a pictures filed under c
        blobs(rng, CLASS_COLOR["a"]).save(root / "c" / f"flipped{i}.png")
    return {
        "exact": [("a/a00.png", "a/resaved.png"), ("a/a01.png", "b/copied_from_a.png")],
        "near": [("a/a02.png", "a/noisy.png"), ("a/a03.png", "a/reencoded.jpg"), ("a/a04.png", "a/bigger.png")],
        "conflict": ("a/a01.png", "b/copied_from_a.png"),
        "flipped": {"c/flipped0.png": "a", "c/flipped1.png": "a"},
    }

"""The built-in sample: a small ImageFolder of coloured shapes, generated deterministically on first use.

Four classes (circle, square, triangle, cross). Each image varies in shape colour, background,
position and size; each class leans towards its own hue so the channel statistics differ by class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lib.data.folders import publish_folder
from lib.settings import cache_dir

CLASSES = ("circle", "cross", "square", "triangle")
PER_CLASS = 160
SIZE = 64
VERSION = 1
# A hue lean per class (RGB weights), so channels differ between classes.
_LEAN = {"circle": (1.0, 0.5, 0.4), "cross": (0.4, 1.0, 0.5), "square": (0.5, 0.5, 1.0), "triangle": (1.0, 0.9, 0.3)}


def sample_root(base: Path | None = None) -> Path:
    """Return the sample's folder, generating it first if missing (about a second)."""
    root = Path(base or cache_dir()) / f"sample-v{VERSION}"
    if not (root / ".complete").exists():
        _generate_atomically(root)
    return root


def make_sample_image(label: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """One RGB image of `label`'s shape with random colour, background, position and size."""
    bg = rng.integers(0, 256, 3) * np.array([0.6, 0.6, 0.6]) + rng.integers(0, 60)
    noise = rng.normal(0, 12, (size, size, 3))
    canvas = np.clip(bg + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(canvas, "RGB")
    lean = np.array(_LEAN[label])
    colour = tuple(int(c) for c in np.clip(rng.uniform(90, 255, 3) * lean + rng.uniform(0, 40), 0, 255))
    r = rng.uniform(0.18, 0.42) * size
    cx, cy = rng.uniform(r, size - r, 2)
    _draw(ImageDraw.Draw(img), label, cx, cy, r, colour)
    return img


def _draw(draw: ImageDraw.ImageDraw, label: str, cx: float, cy: float, r: float, colour) -> None:
    if label == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif label == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif label == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:  # cross
        w = r / 3
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)


def write_sample(root: Path, per_class: int = PER_CLASS, seed: int = 0) -> None:
    """Write the sample ImageFolder under root (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_sample_image(label, rng).save(root / label / f"{label}_{i:04d}.png", optimize=False)


def _generate_atomically(root: Path) -> None:
    # Several sessions may start at once: build aside, then rename into place.
    def build(tmp: Path) -> None:
        write_sample(tmp)
        (tmp / ".complete").touch()

    publish_folder(root, build, ".complete")

"""A dataset where only a small coloured square says the class, and a cnn trained on it in-process.

Each image is grey noise (slightly tinted per pixel) with one SQUARE x SQUARE square of its class's
colour at a random position; nothing else differs between classes, so a model that learned the task
must look at the square, and an attribution map that is right points at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from lib.training.config import TrainConfig
from lib.training.engine import Hooks, fit

SIZE, SQUARE = 32, 6
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 40), "blue": (40, 60, 230)}


@dataclass
class Trained:
    model: nn.Module
    mean_std: tuple
    classes: list[str]
    val: list[tuple[str, int]]  # (absolute path, class)
    boxes: dict[str, tuple[int, int]]  # path -> (row, column) of the square's top-left corner
    val_accuracy: float


def write_squares(root: Path, per_class: int, seed: int = 0) -> dict[str, tuple[int, int]]:
    """per_class PNGs per colour under root/<colour>/; returns where each square is."""
    rng = np.random.default_rng(seed)
    boxes = {}
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = rng.integers(0, 256, (SIZE, SIZE, 1))
            img = np.clip(grey + rng.integers(-30, 31, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            r, c = (int(v) for v in rng.integers(0, SIZE - SQUARE + 1, 2))
            img[r : r + SQUARE, c : c + SQUARE] = colour
            path = root / name / f"{name}_{i:03d}.png"
            Image.fromarray(img).save(path)
            boxes[str(path)] = (r, c)
    return boxes


class _LastState(Hooks):
    def on_checkpoint(self, state: dict, best: bool) -> None:
        self.state = state


def train_on_squares(root: Path, per_class: int = 60, epochs: int = 3) -> Trained:
    """Write the fixture under root and train the app's cnn on it with the app's own engine."""
    boxes = write_squares(root, per_class)
    classes = sorted(COLOURS)
    samples = sorted((p, classes.index(Path(p).parent.name)) for p in boxes)
    config = TrainConfig(model="cnn", epochs=epochs, batch_size=32, lr=3e-3, image_size=SIZE, val_split=0.25)
    hooks = _LastState()
    result = fit(config, samples, classes, hooks, workers=0)
    assert result.status == "completed", result.message
    state = hooks.state
    val = list(zip(state["val_paths"], state["val_targets"]))
    return Trained(result.model.eval(), result.mean_std, classes, val, boxes, result.epochs[-1]["val_accuracy"])

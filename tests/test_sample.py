"""The built-in sample: deterministic, big enough, varied in colour and position, generated once."""

import hashlib

import numpy as np
from PIL import Image

from lib.data.index import build_index
from lib.data.sample import CLASSES, PER_CLASS, sample_root, write_sample


def _digest(root) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_sample_is_deterministic_and_imagefolder_shaped(tmp_path):
    write_sample(tmp_path / "a", per_class=20)
    write_sample(tmp_path / "b", per_class=20)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    index = build_index(str(tmp_path / "a"))
    assert index.classes == sorted(CLASSES) and len(CLASSES) >= 4
    assert set(index.class_counts().values()) == {20} and not index.bad_files
    assert {(h.width, h.height, h.mode) for h in index.headers} == {(64, 64, "RGB")}


def test_generated_once_with_enough_variety(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path))
    root = sample_root()
    assert sample_root() == root and (root / ".complete").exists()
    index = build_index(str(root))
    assert min(index.class_counts().values()) >= 150 and PER_CLASS >= 150
    # Colour varies between images, and classes lean to different channels on average.
    means = {
        c: np.mean(
            [np.asarray(Image.open(p)).reshape(-1, 3).mean(0) for p, t in index.samples[::4] if index.classes[t] == c],
            axis=0,
        )
        for c in index.classes
    }
    per_image = np.array([np.asarray(Image.open(p)).reshape(-1, 3).mean(0) for p, _ in index.samples[:100]])
    assert per_image.std(0).min() > 10  # backgrounds and shapes differ image to image
    spread = np.ptp(np.array(list(means.values())), axis=0)
    assert spread.max() > 5  # at least one channel separates the classes on average

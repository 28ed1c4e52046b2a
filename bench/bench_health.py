"""Dataset health: duplicates over 20,000 32x32 PNGs vs one decode pass; the label check on sklearn's digits.

    python bench/bench_health.py [--images 20000] [--repeats 2]

(a) duplicates: lib.health's scan (decode, content hash, phash thumbnail, features) + perceptual hashes +
    every pair within 16 bits + the groups, against one decode pass of the same files at 32 px
    (lib.pixels.decode.Decoding, what training does), alternating, best of --repeats. Wants <= 2x.
(b) the label check (5-fold linear model on the features, cleanlab's confident learning, feature outliers) on
    the 1,797 8x8 digits that ship with scikit-learn (load_digits, no download), written once as PNGs with
    20 labels flipped; the whole `check_health`. Wants < 120 s; prints how many flips rank in the top 40.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _data import MARKER, data_dir, image_folder
from PIL import Image

from lib.data.folders import publish_folder
from lib.data.index import build_index
from lib.health import MAX_THRESHOLD, duplicates
from lib.health.findings import HealthConfig, check_health
from lib.health.scan import perceptual_hashes, scan
from lib.pixels.decode import Decoding

FLIPS = 20


def noise_folder(n: int) -> Path:
    """n 32x32 RGB PNGs in 4 class folders, written once."""

    def image(i: int, rng: np.random.Generator) -> Image.Image:
        level = rng.uniform(20, 230, 3)
        return Image.fromarray(np.clip(level + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8), "RGB")

    return image_folder(f"health-{n}-v1", n, [f"class{c}" for c in range(4)], image)


def digits_folder() -> tuple[Path, set[str]]:
    """sklearn's digits as PNGs (0-16 scaled to 0-255), FLIPS of them filed under the next digit's folder."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    flipped = set(range(0, len(digits.target), len(digits.target) // FLIPS)[:FLIPS])
    root = data_dir() / "health-digits-v1"

    def build(tmp: Path) -> None:
        for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            label = (target + 1) % 10 if i in flipped else target
            (tmp / str(label)).mkdir(exist_ok=True)
            Image.fromarray((pixels * 255 / 16).astype(np.uint8), "L").save(tmp / str(label) / f"{i:04}.png")
        (tmp / MARKER).touch()

    if not (root / MARKER).exists():
        publish_folder(root, build, MARKER)
    names = {f"{(digits.target[i] + 1) % 10}/{i:04}.png" for i in flipped}
    return root, names


def duplicates_pass(paths: list[str]) -> float:
    t = time.perf_counter()
    found = scan(paths, 16)
    pairs = duplicates.near_pairs(perceptual_hashes(found.grey), MAX_THRESHOLD)
    names = ["x"] * len(found.paths)
    duplicates.duplicate_groups(found.digests, pairs, found.paths, names)
    return time.perf_counter() - t


def decode_pass(paths: list[str]) -> float:
    t = time.perf_counter()
    for _ in Decoding(paths, 32).chunks():
        pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    paths = [p for p, _ in build_index(str(noise_folder(args.images)), marks=False).samples]
    decode_pass(paths)  # warm: page cache and the worker pool
    ours, bare = [], []
    for _ in range(args.repeats):
        bare.append(decode_pass(paths))
        ours.append(duplicates_pass(paths))
    print(f"(a) duplicates over {len(paths):,} images: {min(ours):.2f} s vs one decode pass {min(bare):.2f} s: "
          f"{min(ours) / min(bare):.2f}x (wants <= 2)")  # fmt: skip
    root, flipped = digits_folder()
    index = build_index(str(root), marks=False)
    t = time.perf_counter()
    findings = check_health(index, HealthConfig())
    took = time.perf_counter() - t
    top = {i["path"] for i in findings.label_issues[: 2 * FLIPS]}
    print(f"(b) label check on {index.num_images:,} digits: {took:.1f} s (wants < 120); {len(findings.label_issues)} "
          f"issues, {len(top & flipped)} of the {FLIPS} flipped labels in the top {2 * FLIPS}")  # fmt: skip


if __name__ == "__main__":
    main()

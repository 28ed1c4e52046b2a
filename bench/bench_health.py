"""Dataset health: duplicates over 20,000 32x32 PNGs vs one decode pass; the label check on sklearn's digits.

    python bench/bench_health.py [--images 20000] [--repeats 2] [--labels-only]

(a) duplicates: lib.health's scan (decode, content hash, phash thumbnail, features) + perceptual hashes +
    every pair within 16 bits + the groups, against one decode pass of the same files at 32 px
    (lib.pixels.decode.Decoding, what training does), alternating, best of --repeats. Wants <= 2x.
(b) the label check (5 folds of the default quick model, cleanlab's confident learning, feature outliers) on
    the 1,797 8x8 digits that ship with scikit-learn (load_digits, no download), written once as PNGs with
    20 labels flipped; the whole `check_health`, with `--model auto`: the probe when a backbone's weights are
    in torch hub's cache, else the small cnn (the line says which). Wants < 120 s; prints how many flips rank
    in the top 40, and the load average.
(c) the probe's cost when (b) ran the cnn: the same check with --model probe on resnet18 weights of random
    values written to a temporary torch hub cache (the same architecture and work; its findings mean nothing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
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


def label_check(index, flipped: set[str], model: str = "auto") -> str:
    """One timed check_health over the digits, as a line."""
    t = time.perf_counter()
    findings = check_health(index, HealthConfig(model=model))
    took = time.perf_counter() - t
    top = {i["path"] for i in findings.label_issues[: 2 * FLIPS]}
    return (f"{findings.model_detail}: {took:.1f} s (wants < 120) at load average {os.getloadavg()[0]:.1f}; "
            f"{len(findings.label_issues)} issues, {len(top & flipped)} of the {FLIPS} flipped labels in the top "
            f"{2 * FLIPS}")  # fmt: skip


def stand_in_probe(index, flipped: set[str]) -> str:
    """(c): the probe's time on random resnet18 weights in a temporary hub cache."""
    import torch
    import torchvision

    from lib.training.models import weights_enum, weights_file

    with tempfile.TemporaryDirectory() as home:
        os.environ["TORCH_HOME"] = home
        path = weights_file(weights_enum("resnet18"))
        path.parent.mkdir(parents=True)
        torch.save(torchvision.models.resnet18().state_dict(), path)
        return label_check(index, flipped, "probe")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--labels-only", action="store_true", help="skip (a), the duplicates (default: run it)")
    args = ap.parse_args()
    if not args.labels_only:
        duplicates_bench(args)
    root, flipped = digits_folder()
    index = build_index(str(root), marks=False)
    print(f"(b) label check on {index.num_images:,} digits, {label_check(index, flipped)}")
    if HealthConfig().resolved()[0] == "cnn":
        print(f"(c) stand-in weights, {stand_in_probe(index, flipped)}")


def duplicates_bench(args) -> None:
    paths = [p for p, _ in build_index(str(noise_folder(args.images)), marks=False).samples]
    decode_pass(paths)  # warm: page cache and the worker pool
    ours, bare = [], []
    for _ in range(args.repeats):
        bare.append(decode_pass(paths))
        ours.append(duplicates_pass(paths))
    print(f"(a) duplicates over {len(paths):,} images: {min(ours):.2f} s vs one decode pass {min(bare):.2f} s: "
          f"{min(ours) / min(bare):.2f}x (wants <= 2)")  # fmt: skip


if __name__ == "__main__":
    main()

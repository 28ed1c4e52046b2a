"""Dataset statistics over 20,000 small PNGs: channel_stats against a decode-only loop and the usual recipe.

    python bench/bench_stats.py [--images 20000] [--repeats 3]

(a) decode-only: one process, Image.open(p).convert("RGB") + .load() per image; no statistics at all.
(c) the command: `python -m lib stats DIR --json` as a whole process (interpreter start, imports, index, stats).
(b) the usual recipe: torchvision ImageFolder + DataLoader(batch_size=1) + ToTensor, per-image sums,
    std as the mean of per-image stds (a different, inexact answer).
Same process, same files (generated once under $TORCHSCOPE_BENCH_DATA, page cache warmed first). Wants: channel_stats /
decode-only <= 1.0 (aim 0.6 with two cores), the command too, and well ahead of the recipe.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _data import image_folder
from PIL import Image

from lib.data.index import build_index
from lib.pixels.stats import StatsConfig, channel_stats


def dataset(n: int) -> Path:
    """n 32x32 RGB PNGs in 4 class folders, written once (brightness varies between images)."""

    def image(i: int, rng: np.random.Generator) -> Image.Image:
        level = rng.uniform(20, 230, 3)
        return Image.fromarray(np.clip(level + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8), "RGB")

    return image_folder(f"stats-{n}-v1", n, [f"class{c}" for c in range(4)], image)


def decode_only(paths: list[str]) -> None:
    for p in paths:
        img = Image.open(p).convert("RGB")
        img.load()


def recipe(root: Path) -> tuple[list[float], list[float]]:
    """The common snippet: per-image mean and std averaged over a batch_size=1 DataLoader."""
    import torch
    from torchvision import datasets, transforms

    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), transforms.ToTensor()), batch_size=1)
    mean, std = torch.zeros(3), torch.zeros(3)
    for x, _ in loader:
        mean += x.mean(dim=(0, 2, 3))
        std += x.std(dim=(0, 2, 3))
    return (mean / len(loader)).tolist(), (std / len(loader)).tolist()


def command(root: Path) -> None:
    """`python -m lib stats` on root, a whole process, from the repository root."""
    cmd = [sys.executable, "-m", "lib", "stats", str(root), "--json"]
    subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], check=True, stdout=subprocess.DEVNULL)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def cpu_timed(fn, *args) -> float:
    """CPU seconds of this process: unlike wall time, barely moved by other work on a shared machine."""
    t0 = time.process_time()
    fn(*args)
    return time.process_time() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="number of 32x32 PNGs (default: 20000)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of each fast method; the best counts (default: 3)"
    )
    args = parser.parse_args()
    root = dataset(args.images)
    paths = [p for p, _ in build_index(str(root)).samples]
    decode_only(paths)  # warm the page cache
    cores = os.cpu_count()
    print(f"{len(paths):,} images of 32x32 under {root}; {cores} cores; load average {os.getloadavg()[0]:.1f} at start")

    t_cold, stats = timed(channel_stats, paths, StatsConfig())  # includes starting the forkserver
    t_decode, t_stats, t_serial, t_command = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so a busy moment on a shared machine hits all alike
        t_decode.append(timed(decode_only, paths)[0])
        t_stats.append(timed(channel_stats, paths, StatsConfig())[0])
        t_serial.append(timed(channel_stats, paths, StatsConfig(executor="serial"))[0])
        t_command.append(timed(command, root)[0])
    t_recipe, (r_mean, r_std) = timed(recipe, root)
    cpu_decode = min(cpu_timed(decode_only, paths) for _ in range(args.repeats))
    cpu_serial = min(cpu_timed(channel_stats, paths, StatsConfig(executor="serial")) for _ in range(args.repeats))

    d, s, s1 = min(t_decode), min(t_stats), min(t_serial)
    print(f"decode-only loop (a)          {d:7.2f} s   {d / len(paths) * 1e6:6.1f} us/image")
    print(
        f"channel_stats, {cores} processes     {s:7.2f} s   ratio to (a) {s / d:.2f}   (first call, pool start-up: {t_cold:.2f} s)"
    )
    print(f"channel_stats, 1 process      {s1:7.2f} s   ratio to (a) {s1 / d:.2f}")
    c = min(t_command)
    print(f"python -m lib stats (c)       {c:7.2f} s   ratio to (a) {c / d:.2f}   (whole process)")
    print(f"recipe (b), DataLoader bs=1   {t_recipe:7.2f} s   channel_stats is {t_recipe / s:.1f}x faster")
    n = len(paths)
    print(
        f"CPU time an image: decode-only {cpu_decode / n * 1e6:.1f} us, channel_stats {cpu_serial / n * 1e6:.1f} us "
        f"(x{cpu_serial / cpu_decode:.2f}); with {cores} idle cores the ratio to (a) would be about {cpu_serial / cores / cpu_decode:.2f}"
    )
    print(f"exact mean {_fmt(stats.mean)}  std {_fmt(stats.std)}")
    print(f"recipe mean {_fmt(r_mean)}  std {_fmt(r_std)}  (mean of per-image stds: misses the spread between images)")
    print(f"load average {os.getloadavg()[0]:.1f} at end (above {cores} means other work shared the cores)")
    return 0


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())

"""Exact per-channel dataset statistics, streaming and parallel.

Every pixel of a decoded (and optionally resized) RGB image is one of 256 levels per channel, and
the rest of the evaluation pipeline (ToDtype, Normalize) maps each level to one float. So a worker
only counts levels: a (3, 256) int64 histogram per chunk of images, merged by addition (exact,
order-independent, memory flat). Mean, population std, min, max and the NaN/Inf counts then come
from the 256 level values in float64: the same as summing every pixel in float64, without the rounding.

This module imports no torch at import time: worker processes start with numpy and Pillow only.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from lib.data.images import load_rgb
from lib.pixels.resize import Resizing, resize, side

Progress = Callable[[int, int], None]  # (done, total)
EXECUTORS = ("auto", "process", "thread", "serial")
# Below this many images the pool's first start-up (0.3-0.5 s) costs more than the second core saves
# (about 80 us an image).
MIN_IMAGES_FOR_POOL = 4000


@dataclass(frozen=True)
class StatsConfig:
    """How to measure: the evaluation pipeline (resize, optional normalization) and how to run.

    size: resize to (size, size) exactly as `TransformConfig(image_size=size)` does (a Resizing: as a run
        with it does); None = native.
    mean/std: normalize (float32, like `v2.Normalize`) before measuring; None = values in [0, 1].
    executor: "process" (worker_pool), "thread", "serial", or "auto" (process for big datasets).
    """

    size: int | Resizing | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    workers: int = 0  # 0 = every core
    executor: str = "auto"
    chunk_images: int = 256  # paths per task
    chunk_bytes: int = 1 << 20  # decoded bytes buffered before counting (bounds memory)

    def __post_init__(self):
        if self.size is not None and not 4 <= side(self.size) <= 1024:
            raise ValueError(f"Size {self.size} is out of range; choose between 4 and 1024 pixels, or none.")
        if (self.mean is None) != (self.std is None):
            raise ValueError("Give both mean and std for normalization, or neither.")
        if self.mean is not None and (len(self.mean) != 3 or len(self.std) != 3):
            raise ValueError("Give three means and three stds, one per RGB channel.")
        if self.executor not in EXECUTORS:
            raise ValueError(f"Unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}.")
        if self.workers < 0 or self.chunk_images < 1 or self.chunk_bytes < 1:
            raise ValueError("workers must be 0 or more, and chunk sizes 1 or more.")

    def num_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def options(self) -> dict:
        """The settings that change the answer (not how it is computed)."""
        return {"size": self.size, "mean": self.mean, "std": self.std}


@dataclass
class ChannelStats:
    """Per-channel statistics over every pixel of every usable image, in RGB order.

    Values are on the [0, 1] scale, or in std units when the config normalizes.
    num_pixels counts pixels per channel; mean, std, min and max are over the finite values only,
    nan_count and inf_count count the rest over all channels.
    """

    mean: list[float]
    std: list[float]  # population std (divide by N)
    min: list[float]
    max: list[float]
    num_images: int
    num_pixels: int
    nan_count: int
    inf_count: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of unusable images
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON shape of `python -m lib stats --json`."""
        d = asdict(self)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


def channel_stats(
    paths: Sequence[str], config: StatsConfig | None = None, progress: Progress | None = None
) -> ChannelStats:
    """Exact per-channel statistics of the images at `paths` after the evaluation pipeline.

    Raises:
        ValueError: when there are no paths, or no path decodes.
    """
    config = config or StatsConfig()
    if not paths:
        raise ValueError("There are no images to measure; choose a dataset with at least one image.")
    counts, failed = channel_counts(paths, config, progress)
    num_images = len(paths) - len(failed)
    if num_images == 0:
        raise ValueError(
            f"None of the {len(paths)} images could be decoded; check the dataset with `python -m lib inspect`."
        )
    return stats_from_counts(counts, level_values(config), num_images, failed, config.options())


def decoded_stats(images: np.ndarray, config: StatsConfig | None = None) -> ChannelStats:
    """Exact statistics of images already decoded (and resized) into a uint8 array (N, 3, H, W).

    The same level histogram as `channel_stats`, so the engine's normalization and `python -m lib stats`
    agree to the last bit on the same pixels; no file is read again.
    """
    config = config or StatsConfig()
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f"Expected a non-empty uint8 array (N, 3, H, W), got {images.dtype} {images.shape}.")
    return stats_from_counts(decoded_counts(images), level_values(config), len(images), options=config.options())


def decoded_counts(images: np.ndarray) -> np.ndarray:
    """The (3, 256) int64 level histogram of uint8 images (N, 3, H, W); N may be 0."""
    return np.stack([np.bincount(images[:, c].ravel(), minlength=256) for c in range(3)]).astype(np.int64)


def channel_counts(
    paths: Sequence[str], config: StatsConfig, progress: Progress | None = None
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The (3, 256) int64 level histogram of the images at `paths` and the (path, reason) of those that fail.

    Histograms add exactly, so processes that each count a share of a dataset sum to the whole one.
    """
    counts = np.zeros((3, 256), dtype=np.int64)
    failed: list[tuple[str, str]] = []
    for chunk_counts, chunk_failed in _run_chunks(list(paths), config, progress):
        counts += chunk_counts
        failed += chunk_failed
    return counts, failed


def stats_from_counts(counts: np.ndarray, values: np.ndarray, num_images: int, failed=(), options=None) -> ChannelStats:
    """Statistics of a (3, 256) level histogram whose levels map to `values` (3, 256) float64."""
    finite = np.isfinite(values) & (counts > 0)
    mean, std, lo, hi = [], [], [], []
    for c in range(3):
        h, v = counts[c][finite[c]].astype(np.float64), values[c][finite[c]]
        n = h.sum()
        m = float((h * v).sum() / n) if n else float("nan")
        # Two passes over 256 levels: no cancellation from sum-of-squares minus squared mean.
        mean.append(m)
        std.append(float(np.sqrt((h * (v - m) ** 2).sum() / n)) if n else float("nan"))
        lo.append(float(v.min()) if n else float("nan"))
        hi.append(float(v.max()) if n else float("nan"))
    return ChannelStats(
        mean,
        std,
        lo,
        hi,
        num_images=num_images,
        num_pixels=int(counts[0].sum()),
        nan_count=int(counts[np.isnan(values)].sum()),
        inf_count=int(counts[np.isinf(values)].sum()),
        failed=list(failed),
        options=dict(options or {}),
    )


def level_values(config: StatsConfig) -> np.ndarray:
    """What each uint8 level k becomes after the pipeline: (3, 256) float64.

    Without normalization that is k / 255 exactly. With it, torchvision's own float32 arithmetic
    (ToDtype, then (x - mean) / std), so NaN and Inf appear exactly where training would see them.
    """
    if config.mean is None:
        return np.tile(np.arange(256, dtype=np.float64) / 255.0, (3, 1))
    import torch  # only here: worker processes never need torch
    from torchvision.transforms.v2 import functional as F

    levels = torch.arange(256, dtype=torch.uint8).expand(3, 1, 256)  # (C, 1, 256)
    x = F.to_dtype(levels, torch.float32, scale=True)
    # Not F.normalize: it refuses any zero std, and a tiny one must show up here as Inf.
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).reshape(3, 256).double().numpy()


def _chunk_counts(
    paths: list[str], size: int | Resizing | None, chunk_bytes: int
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Worker: level counts of a chunk of images, and the (path, reason) of those that fail."""
    counts = np.zeros((3, 256), dtype=np.int64)
    failed, buffer, buffered = [], [], 0
    for path in paths:
        try:
            data = resize(load_rgb(path), size).tobytes()  # (H, W, 3) uint8, row-major
        except ValueError as e:
            failed.append((path, str(e)))
            continue
        buffer.append(data)
        buffered += len(data)
        if buffered >= chunk_bytes:  # count in bulk (fast), but never hold more than chunk_bytes
            counts += _count_levels(buffer)
            buffer, buffered = [], 0
    if buffer:
        counts += _count_levels(buffer)
    return counts, failed


def _count_levels(buffers: list[bytes]) -> np.ndarray:
    pixels = np.frombuffer(b"".join(buffers), dtype=np.uint8).reshape(-1, 3)  # (N, 3)
    return np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(3)]).astype(np.int64)


def _run_chunks(paths: list[str], config: StatsConfig, progress: Progress | None) -> Iterator:
    """Yield each chunk's result as it completes, with at most 2 chunks per worker in flight."""
    total, done = len(paths), 0
    chunks = (paths[i : i + config.chunk_images] for i in range(0, total, config.chunk_images))
    if progress:
        progress(0, total)
    pending: dict[Future, int] = {}
    with _executor(config, total) as pool:
        try:
            for chunk in chunks:
                pending[pool.submit(_chunk_counts, chunk, config.size, config.chunk_bytes)] = len(chunk)
                while len(pending) >= 2 * config.num_workers():
                    done = yield from _collect(pending, done, total, progress)
            while pending:
                done = yield from _collect(pending, done, total, progress)
        finally:  # stopped early (an error, or Streamlit's rerun): drop the work not yet started
            for f in pending:
                f.cancel()


def _collect(pending: dict[Future, int], done: int, total: int, progress: Progress | None) -> Iterator:
    """Yield the results of the chunks that finish next; return the new count of images done."""
    for f in wait(pending, return_when="FIRST_COMPLETED").done:
        done += pending.pop(f)
        yield f.result()
        if progress:
            progress(done, total)
    return done


@contextmanager
def _executor(config: StatsConfig, total: int) -> Iterator[Executor]:
    kind, workers = config.executor, config.num_workers()
    if kind == "auto":
        kind = "process" if workers > 1 and total >= MIN_IMAGES_FOR_POOL else "serial"
    if kind != "process":
        with ThreadPoolExecutor(workers if kind == "thread" else 1) as pool:
            yield pool
        return
    pool = worker_pool(workers)
    try:
        yield pool
    except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh next time
        with _POOLS_LOCK:
            _POOLS.pop(workers, None)
        raise


_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_MAIN_LOCK = threading.Lock()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of this process, shared by callers (threads of a server).

    forkserver in a threaded server or beside torch, where fork is unsafe; fork in a command that
    runs one thread without torch (`python -m lib stats`), whose workers then start without
    importing numpy and Pillow again (0.3 s of a 2 s command).
    """
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = _WorkerPool(workers, mp_context=multiprocessing.get_context(_start_method()))
        return _POOLS[workers]


def _start_method() -> str:
    forkable = "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin"
    alone = threading.active_count() == 1 and "torch" not in sys.modules
    return "fork" if forkable and alone else "forkserver"


class _WorkerPool(ProcessPoolExecutor):
    """A pool whose workers never import the caller's main module.

    A spawn or forkserver child re-imports `__main__` by its path. Inside Streamlit that is the app
    script, which would then run, in bare mode, in every worker. Workers start inside `submit`, so
    `__main__` is swapped there for an empty module (no __file__, no __spec__: nothing to import).
    Streamlit rebinds `__main__` at each script run and never reads it back, so the swap is safe.
    """

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with _MAIN_LOCK:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                return super().submit(fn, *args, **kwargs)
            finally:
                sys.modules["__main__"] = main

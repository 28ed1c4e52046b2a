"""Decoding a dataset once into one uint8 array (N, 3, S, S), for training.

Big datasets decode in worker processes (lib.pixels.stats.worker_pool: forkserver, Pillow and numpy only):
tiny images are mostly Python work that holds the GIL, so threads barely help, and a `Decoding` started
before the caller imports torch runs while that import does. Small ones decode on threads in-process,
which pays no pool start-up. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import numpy as np

from lib.data.images import load_rgb
from lib.pixels.resize import Resizing, resize, side
from lib.pixels.stats import MIN_IMAGES_FOR_POOL, worker_pool
from lib.settings import default_threads

CHUNK = 256  # images per task: few enough futures that their overhead is nothing beside a decode


def decode_array(path: str, size: int | Resizing) -> np.ndarray:
    """One image as uint8 (3, S, S): load_rgb, the one resize (a side, or a Resizing), channels first.

    Raises:
        ValueError: when the image cannot be decoded (the reason in a few words).
    """
    return np.asarray(resize(load_rgb(path), size), dtype=np.uint8).transpose(2, 0, 1)


def decode_chunk(paths: Sequence[str], size: int | Resizing) -> tuple[bytes, list[tuple[int, str]]]:
    """Worker: the chunk's images as bytes of (n, 3, S, S) uint8 (zeros where one fails), and the
    (index in chunk, reason) of each that fails."""
    out = np.zeros((len(paths), 3, side(size), side(size)), dtype=np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_array(path, size)
        except ValueError as e:
            failed.append((i, str(e)))
    return out.tobytes(), failed


class Decoding:
    """A decode in flight: made at once, it returns while workers decode; `chunks()` hands the results over.

    workers: processes (or threads below MIN_IMAGES_FOR_POOL images); 0 means every core this process may use.
    """

    def __init__(self, paths: Sequence[str], size: int | Resizing, *, workers: int = 0):
        self.paths, self.size = list(paths), size
        workers = workers or default_threads()
        pooled = workers > 1 and len(self.paths) >= MIN_IMAGES_FOR_POOL
        self._threads = None if pooled else ThreadPoolExecutor(min(4, workers))
        pool: Executor = worker_pool(workers) if pooled else self._threads
        self._futures: list[Future] = [
            pool.submit(decode_chunk, self.paths[i : i + CHUNK], size) for i in range(0, len(self.paths), CHUNK)
        ]

    def chunks(self) -> Iterator[tuple[int, np.ndarray, list[tuple[int, str]]]]:
        """(first index, uint8 (n, 3, S, S), [(index, reason)]) per chunk, in order; cancels the rest if left early."""
        try:
            for k, future in enumerate(self._futures):
                data, failed = future.result()
                start = k * CHUNK
                images = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3, side(self.size), side(self.size))
                yield start, images, [(start + i, reason) for i, reason in failed]
        finally:
            self.cancel()

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)

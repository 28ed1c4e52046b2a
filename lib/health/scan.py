"""One decode pass over a dataset that yields everything the health checks need, in parallel.

Per image: a content hash of the decoded pixels (mode, size and bytes: a PNG re-saved is still the same
image), the 32x32 grey thumbnail its perceptual hash is computed from, the image at the feature size (the
labels' quick model and the outlier score use it), and its brightness and contrast. Decoding goes through
lib.data.images.load_rgb (the one decoder, with its pixel and frame limits) in worker processes for big
datasets (lib.pixels.stats.worker_pool: forkserver, Pillow and numpy only), threads for small ones, in
chunks, like the statistics. Imports no torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lib.data.images import load_rgb
from lib.pixels.resize import resize
from lib.pixels.stats import MIN_IMAGES_FOR_POOL, worker_pool
from lib.settings import default_threads

Progress = Callable[[int, int], None]  # (done, total)
HASH_SIDE = 32  # the perceptual hash's grey thumbnail, as imagehash.phash makes it (hash_size 8, factor 4)
CHUNK = 256


@dataclass
class Scan:
    """What one decode pass found, one row per image that decoded (in the order of `paths`)."""

    paths: list[str]  # as given (absolute)
    digests: list[str]  # hex content hash of the decoded pixels
    grey: np.ndarray  # uint8 (N, 32, 32): the perceptual hash's input
    features: np.ndarray  # uint8 (N, S, S, 3): the image at the feature size
    sizes: np.ndarray  # int64 (N, 2): native width, height
    failed: list[tuple[str, str]]  # (path, reason) of the images that do not decode


def scan_chunk(paths: Sequence[str], size: int) -> tuple:
    """Worker: (digests, grey bytes, feature bytes, sizes, [(index in chunk, reason)]) of a chunk of images."""
    digests, grey, feats, sizes, failed = [], [], [], [], []
    for i, path in enumerate(paths):
        try:
            img = load_rgb(path)
        except ValueError as e:
            failed.append((i, str(e)))
            continue
        head = f"{img.mode} {img.width}x{img.height}\n".encode()
        digests.append(hashlib.blake2b(head + img.tobytes(), digest_size=16).hexdigest())
        grey.append(img.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS).tobytes())
        feats.append(resize(img, size).tobytes())
        sizes.append(img.size)
    return digests, b"".join(grey), b"".join(feats), sizes, failed


def scan(paths: Sequence[str], size: int = 16, *, workers: int = 0, progress: Progress | None = None) -> Scan:
    """Decode every image once (in parallel) and collect its hashes, thumbnails and size."""
    paths = list(paths)
    workers = workers or default_threads()
    pooled = workers > 1 and len(paths) >= MIN_IMAGES_FOR_POOL
    threads = None if pooled else ThreadPoolExecutor(min(4, workers))
    pool: Executor = worker_pool(workers) if pooled else threads
    futures = [pool.submit(scan_chunk, paths[i : i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    out = Scan([], [], [], [], [], [])
    grey, feats, sizes = [], [], []
    try:
        for k, future in enumerate(futures):
            digests, g, f, s, failed = future.result()
            chunk = paths[k * CHUNK : (k + 1) * CHUNK]
            bad = {i for i, _ in failed}
            out.paths += [p for i, p in enumerate(chunk) if i not in bad]
            out.failed += [(chunk[i], reason) for i, reason in failed]
            out.digests += digests
            grey.append(np.frombuffer(g, dtype=np.uint8))
            feats.append(np.frombuffer(f, dtype=np.uint8))
            sizes += s
            if progress:
                progress(min((k + 1) * CHUNK, len(paths)), len(paths))
    finally:
        for future in futures:
            future.cancel()
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
    out.grey = np.concatenate(grey or [np.zeros(0, np.uint8)]).reshape(-1, HASH_SIDE, HASH_SIDE)
    out.features = np.concatenate(feats or [np.zeros(0, np.uint8)]).reshape(-1, size, size, 3)
    out.sizes = np.array(sizes, dtype=np.int64).reshape(-1, 2)
    return out


def _dct_matrix(n: int) -> np.ndarray:
    """scipy.fftpack.dct's unnormalized type-II DCT as a matrix: y = D @ x."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_D = _dct_matrix(HASH_SIDE)[:8]  # only the 8 lowest frequencies are kept


HASH_CHUNK = 2048  # thumbnails hashed at a time: their float64 copy stays in cache (the whole set was 8x slower)


def perceptual_hashes(grey: np.ndarray) -> np.ndarray:
    """imagehash.phash of each grey 32x32 thumbnail (N, 32, 32) as uint64, batched: DCT rows and columns,
    the 8x8 lowest frequencies, each bit whether its coefficient is above their median."""
    if len(grey) > HASH_CHUNK:
        return np.concatenate([perceptual_hashes(grey[i : i + HASH_CHUNK]) for i in range(0, len(grey), HASH_CHUNK)])
    low = _D @ grey.astype(np.float64) @ _D.T  # (N, 8, 8)
    flat = low.reshape(len(grey), 64)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)

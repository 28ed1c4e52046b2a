"""What the loop trains on: the split, the decode, and batches of uint8 images from memory or from disk.

Images are decoded once into a uint8 tensor (N, 3, S, S) when that fits `cache_bytes`; later epochs
only index it. Otherwise a DataLoader decodes each epoch with worker processes. Either way each batch
goes through lib.pixels.transforms.model_input (scale, the config's augmentation, normalization) on the
device: the same function the Channels preview calls. With several processes every rank makes the
same split and draws, and decodes only its shard (lib.training.distributed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lib.pixels.decode import Decoding, decode_array
from lib.pixels.resize import Resizing, side
from lib.pixels.transforms import IMAGENET_MEAN, IMAGENET_STD, Augmentation, model_input
from lib.training.config import DEFAULT_CACHE_MB, TrainConfig, fits_in_memory, held_out
from lib.training.distributed import SINGLE, Dist, ShardBatchSampler, ShardTensorBatches, batch_slices, tensor_order
from lib.training.loop import Batch, Stopped
from lib.training.timings import Timings

DEFAULT_CACHE_BYTES = DEFAULT_CACHE_MB * 2**20
Progress = Callable[[str], bool]  # a phase's progress ("decoding images 120/640") -> True to stop: Hooks.on_progress


def quiet(message: str) -> bool:
    """A Progress that shows nothing and never stops."""
    return False


def stratified_split(targets: Sequence[int], val_split: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): each class holds out round(n * val_split) of its images, at least one.

    Raises:
        ValueError: when a class has fewer than 2 images (nothing to hold out).
    """
    rng = np.random.default_rng(seed)
    targets = np.asarray(targets)
    train, val = [], []
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        if len(idx) < 2:
            raise ValueError(
                f"Class {int(c)} has {len(idx)} image; each class needs at least 2 to hold one out for validation."
            )
        k = held_out(len(idx), val_split)
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(val)


def decode_one(path: str, image_size: int | Resizing) -> torch.Tensor:
    """One image as uint8 (3, S, S), through the one resize (lib.pixels.resize: a side, or a run's Resizing)."""
    return torch.from_numpy(decode_array(path, image_size).copy())


def decode_images(
    paths: Sequence[str],
    image_size: int | Resizing,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], bool] | None = None,
    bad: list[tuple[int, str]] | None = None,
    decoding: Decoding | None = None,
) -> torch.Tensor:
    """Decode every path into one uint8 tensor (N, 3, S, S), in parallel (lib.pixels.decode.Decoding).

    `decoding` is one already started on these paths (the trainer starts it before importing torch).
    `progress(done, total)` may return True to stop early (raises Stopped). With `bad` given, an image
    that does not decode leaves its slot zero and is listed there as (index, reason) instead of raising.
    """
    decoding = decoding or Decoding(paths, image_size, workers=workers or 0)
    out = torch.empty((len(paths), 3, side(image_size), side(image_size)), dtype=torch.uint8)
    for start, images, failed in decoding.chunks():
        if failed and bad is None:
            raise ValueError(f"{paths[failed[0][0]]}: {failed[0][1]}")
        out.numpy()[start : start + len(images)] = images  # a numpy view of out: no copy, no read-only warning
        if bad is not None:
            bad.extend(failed)
        done = start + len(images)
        if progress and progress(done, len(paths)):
            raise Stopped()
    return out


def dataset_mean_std(
    paths: Sequence[str], image_size: int | Resizing, *, decoded: torch.Tensor | None = None, dist: Dist = SINGLE
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of the resized images, pixel values in [0, 1].

    lib.pixels.stats's exact histogram statistics: of `decoded` (N, 3, S, S) uint8 when the images are
    already in memory, else streamed and parallel over the files, with the same resize. With several
    processes `decoded` is this rank's shard, or each rank counts its share of `paths`; the histograms are
    all-reduced (integers: exact), so every rank gets the single-process answer.
    """
    from lib.pixels.stats import (
        StatsConfig,
        channel_counts,
        channel_stats,
        decoded_counts,
        decoded_stats,
        level_values,
        stats_from_counts,
    )

    config = StatsConfig(size=image_size)
    if not dist.enabled:
        stats = channel_stats(list(paths), config) if decoded is None else decoded_stats(decoded.numpy())
        return tuple(stats.mean), tuple(stats.std)
    if decoded is None:
        counts, _ = channel_counts(list(paths)[dist.rank :: dist.world_size], config)
    else:
        counts = decoded_counts(decoded.numpy())
    counts = dist.sum_array(torch.from_numpy(counts)).numpy()
    stats = stats_from_counts(counts, level_values(config), 0)
    return tuple(stats.mean), tuple(stats.std)


class TensorBatches:
    """Batches from decoded uint8 images in memory: `len()` batches per pass, reshuffled each pass."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
    ):
        self.images, self.targets, self.batch_size = images, targets, batch_size
        self.shuffle, self.generator = shuffle, generator

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.targets)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)  # drawn on the CPU generator either way: same order on any device
        for i in range(0, n, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.images[idx], self.targets[idx]


class DecodingDataset(Dataset):
    """(uint8 (3, S, S), target) decoded from disk on every access: the path for data too big to keep."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_size: int | Resizing):
        self.samples, self.image_size = list(samples), image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[i]
        return decode_one(path, self.image_size), target


class EpochOrder(Sampler):
    """One torch.randperm(n, generator) per pass, drawn when the pass begins: the order TensorBatches uses,
    and exactly one draw per epoch, so a generator state saved between epochs resumes the same order."""

    def __init__(self, n: int, generator: torch.Generator | None):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def streaming_batches(
    samples: Sequence[tuple[str, int]],
    image_size: int | Resizing,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None,
    workers: int,
    dist: Dist = SINGLE,
) -> DataLoader:
    """A DataLoader that decodes each epoch; workers start by forkserver (forking a threaded torch can hang).

    With several processes it loads only this rank's part of each global batch (ShardBatchSampler).
    """
    if dist.enabled:
        sampler = ShardBatchSampler(len(samples), batch_size, dist, generator if shuffle else None)
        batching = dict(batch_sampler=sampler)
    else:
        batching = dict(batch_size=batch_size, sampler=EpochOrder(len(samples), generator) if shuffle else None)
    return DataLoader(
        DecodingDataset(samples, image_size),
        **batching,
        num_workers=workers,
        persistent_workers=workers > 0,
        multiprocessing_context="forkserver" if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
    )


def batch_preparer(
    device: torch.device,
    mean_std: tuple | None,
    augmentation: Augmentation | None = None,
    generator: torch.Generator | None = None,
) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """A function (uint8 (B, 3, S, S), train) -> the model's float input on device: `model_input`, the
    function the Channels preview calls, augmenting training batches only."""

    def prepare(x: torch.Tensor, train: bool) -> torch.Tensor:
        aug = augmentation if train else None
        return model_input(x, mean_std=mean_std, augmentation=aug, generator=generator, device=device)

    return prepare


@dataclass
class Data:
    train: Iterable[Batch]
    val: Iterable[Batch]
    mean_std: tuple | None
    cached: bool
    val_samples: list[tuple[str, int]]  # the validation images evaluated, in order (those that decoded)
    shuffle: torch.Generator | None = None  # draws the training order; its state goes into checkpoints


def prepare_data(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    *,
    cache_bytes: int,
    workers: int,
    progress: Progress = quiet,
    device: torch.device | None = None,
    timings: Timings | None = None,
    decoding: Decoding | None = None,
    dist: Dist = SINGLE,
) -> Data:
    """Split, then decode once into memory if the images fit cache_bytes, else stream; pick mean/std.

    `decoding` is a decode of every sample, in order, already started (by the trainer, before its imports).
    `progress` hears each phase; True from it during the decode raises Stopped.
    With several processes every rank makes the same split and draws, and decodes only its shard.
    """
    timings = Timings() if timings is None else timings
    split = stratified_split([t for _, t in samples], config.val_split, config.seed)
    train_s, val_s = [samples[i] for i in split[0]], [samples[i] for i in split[1]]
    shuffle = torch.Generator().manual_seed(config.seed + 1)
    if fits_in_memory(math.ceil(len(samples) / dist.world_size), config.image_size, cache_bytes):
        if dist.enabled:
            data = _sharded_cached_data(config, train_s, val_s, progress=progress, shuffle=shuffle, device=device,
                                        dist=dist)  # fmt: skip
        else:
            data = _cached_data(config, samples, split, progress=progress, shuffle=shuffle, device=device,
                                timings=timings, decoding=decoding)  # fmt: skip
        data.shuffle = shuffle
        return data
    return _streamed_data(config, train_s, val_s, progress=progress, shuffle=shuffle, workers=workers, timings=timings,
                          dist=dist)  # fmt: skip


def _streamed_data(
    config: TrainConfig,
    train_s: list[tuple[str, int]],
    val_s: list[tuple[str, int]],
    *,
    progress: Progress,
    shuffle: torch.Generator,
    workers: int,
    timings: Timings,
    dist: Dist,
) -> Data:
    """DataLoaders that decode every epoch, for images that do not fit in memory; mean/std streamed too."""
    size, batch = config.resizing(), config.batch_size
    train = streaming_batches(train_s, size, batch, shuffle=True, generator=shuffle, workers=workers, dist=dist)
    val = streaming_batches(val_s, size, batch, shuffle=False, generator=None, workers=workers, dist=dist)
    if config.normalization == "dataset":
        progress("computing normalization")
    with timings("statistics"):
        mean_std = normalization_for(config, [p for p, _ in train_s], None, dist)
    return Data(train, val, mean_std, cached=False, val_samples=val_s, shuffle=shuffle)


def _cached_data(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    split: tuple[list[int], list[int]],
    *,
    progress: Progress,
    shuffle: torch.Generator,
    device: torch.device | None,
    timings: Timings,
    decoding: Decoding | None,
) -> Data:
    """Decode every image once; on CUDA the uint8 tensor then moves to the GPU, so a batch is a gather there.

    `split` is stratified_split's (train indices, val indices) into samples.
    """
    train_s, val_s = [samples[i] for i in split[0]], [samples[i] for i in split[1]]
    with timings("decode"):
        images, bad = _decode_in_split_order(config, samples, split, progress=progress, decoding=decoding)
    targets = torch.tensor([t for _, t in train_s + val_s])
    keep = torch.ones(len(targets), dtype=torch.bool)
    keep[[i for i, _ in bad]] = False  # an image that does not decode is left out, not a failed run
    n = int(keep[: len(train_s)].sum())
    if n == 0 or n == int(keep.sum()):
        split_name = "training" if n == 0 else "validation"
        raise ValueError(
            f"No {split_name} image decodes ({len(bad)} of {len(keep)} failed, e.g. {bad[0][1]}); "
            "run `python -m lib inspect` on the dataset to see which."
        )
    images, targets = images[keep], targets[keep]  # (N, 3, S, S)
    if bad:
        progress(f"left out {len(bad)} images that do not decode")
    with timings("statistics"):
        mean_std = normalization_for(config, [p for p, _ in train_s], images[:n])  # on the CPU copy
    if device is not None and device.type == "cuda":
        images, targets = images.to(device), targets.to(device)
    train = TensorBatches(images[:n], targets[:n], config.batch_size, shuffle=True, generator=shuffle)
    val = TensorBatches(images[n:], targets[n:], config.batch_size, shuffle=False)
    dropped = {i - len(train_s) for i, _ in bad}
    kept_val = [s for i, s in enumerate(val_s) if i not in dropped]
    return Data(train, val, mean_std, cached=True, val_samples=kept_val)


def _decode_in_split_order(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    split: tuple[list[int], list[int]],
    *,
    progress: Progress,
    decoding: Decoding | None,
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """uint8 (N, 3, S, S), training images then validation ones, and (position, reason) of those that fail.

    The decode itself runs over `samples` in their order: a `decoding` started before the split was known
    (by the trainer, before its imports) is used as it is.
    """

    def decoded(done: int, total: int) -> bool:
        return progress(f"decoding images {done}/{total}")

    found: list[tuple[int, str]] = []
    paths = [p for p, _ in samples]
    every = decode_images(paths, config.resizing(), progress=decoded, bad=found, decoding=decoding)
    order = split[0] + split[1]
    position = {sample: k for k, sample in enumerate(order)}
    return every[torch.tensor(order)], [(position[i], reason) for i, reason in found]


def normalization_for(
    config: TrainConfig, train_paths: list[str], decoded: torch.Tensor | None, dist: Dist = SINGLE
) -> tuple | None:
    """(mean, std) for the config's normalization: the training split's own, ImageNet's, or None."""
    if config.normalization == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if config.normalization == "weights":  # the pretrained weights' own transforms()
        from lib.training.models import weights_mean_std

        return weights_mean_std(config.model, config.weights_name)
    if config.normalization == "dataset":
        return dataset_mean_std(train_paths, config.resizing(), decoded=decoded, dist=dist)
    return None


def _sharded_cached_data(
    config: TrainConfig,
    train_s: list[tuple[str, int]],
    val_s: list[tuple[str, int]],
    *,
    progress: Progress,
    shuffle: torch.Generator,
    device: torch.device | None,
    dist: Dist,
) -> Data:
    """Several processes, in memory: this rank decodes the images the first epoch's draw gives it, once."""
    # The draw one process makes for its first epoch, from a copy: `shuffle` itself is drawn once per epoch
    # as the batches are iterated, so its state between epochs (saved in checkpoints) is one process's.
    first = tensor_order(len(train_s), torch.Generator().set_state(shuffle.get_state()))
    shard = dict(config=config, progress=progress, device=device, dist=dist)
    train = _decoded_shard(train_s, first=first, generator=shuffle, **shard)
    val = _decoded_shard(val_s, first=torch.arange(len(val_s)), generator=None, **shard)
    mean_std = normalization_for(config, [], train.good_images, dist)
    dropped = {i for part in dist.gather(val.bad) for i in part}  # every rank's, for the checkpoint's split
    kept_val = [s for i, s in enumerate(val_s) if i not in dropped]
    return Data(train.batches, val.batches, mean_std, cached=True, val_samples=kept_val)


@dataclass
class _Shard:
    batches: ShardTensorBatches  # over this rank's images
    good_images: torch.Tensor  # its decoded uint8 images that decode, on the CPU
    bad: list[int]  # indices into the samples of those that do not


def _decoded_shard(
    samples: Sequence[tuple[str, int]],
    *,
    first: torch.Tensor,
    generator: torch.Generator | None,
    config: TrainConfig,
    progress: Progress,
    device: torch.device | None,
    dist: Dist,
) -> _Shard:
    """This rank's part of samples, as `first` (the first epoch's order) and batch_slices hand it out, decoded."""
    slices = batch_slices(len(samples), config.batch_size, dist)
    owned = torch.cat([first[s] for s in slices]) if slices else first[:0]  # (N_local,) indices into samples

    def decoded(done: int, total: int) -> bool:
        # A stop asked now acts at the first batch, where all ranks agree; one rank stopping alone would hang.
        progress(f"decoding images {done}/{total} (rank {dist.rank}'s share of {dist.world_size})")
        return False

    bad: list[tuple[int, str]] = []
    images = decode_images([samples[i][0] for i in owned], config.resizing(), progress=decoded, bad=bad)
    targets = torch.tensor([samples[i][1] for i in owned], dtype=torch.int64)
    bad_rows = [i for i, _ in bad]
    good = torch.ones(len(owned), dtype=torch.bool)
    good[bad_rows] = False
    kept = images[good]
    if device is not None and device.type == "cuda":
        images, targets = images.to(device), targets.to(device)
    train = generator is not None
    batches = ShardTensorBatches(images, targets, owned, first, slices, generator, bad=bad_rows, train=train)
    return _Shard(batches, kept, [int(owned[i]) for i in bad_rows])


def skipping(loader: Iterable[Batch], skip: int) -> Iterator[Batch]:
    """loader's batches after the first `skip` (resuming mid-epoch: the order is drawn as usual, then skipped)."""
    for i, batch in enumerate(loader):
        if i >= skip:
            yield batch

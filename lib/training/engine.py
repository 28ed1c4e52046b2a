"""Training, pytorch/examples mnist style: `train_epoch` and `evaluate` take everything as arguments.

`fit` wires a TrainConfig to data, model, optimizer and schedule and always ends in a status:
`completed`; `diverged` (non-finite loss, with what to try); `stopped` (stop event or a hook asking,
checked after every batch); `failed` (any exception, with its message). Metrics reach the hooks as they
happen, so whatever ran is kept in every case. Deterministic under config.seed: the split, the weight
init, the shuffling and the augmentation each draw from their own seeded generator.

Images are decoded once into a uint8 tensor (N, 3, S, S) when that fits `cache_bytes`; later epochs
only index it. Otherwise a DataLoader decodes each epoch with worker processes. Either way each batch
goes through lib.pixels.transforms.model_input (scale, the config's augmentation, normalization) on the
device: the same function the Channels preview calls.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from lib.pixels.decode import Decoding, decode_array
from lib.pixels.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    augmentation_generator,
    model_input,
)
from lib.runs.status import Status
from lib.training.checkpoint import LoadedRun, make_checkpoint
from lib.training.config import DEFAULT_CACHE_MB, TrainConfig, fits_in_memory, held_out
from lib.training.counts import fraction
from lib.training.distributed import Dist, ShardBatchSampler, ShardTensorBatches, batch_slices, tensor_order
from lib.training.models import build_model
from lib.training.resume import resume_point, same_split
from lib.training.timings import Timings

DEFAULT_CACHE_BYTES = DEFAULT_CACHE_MB * 2**20
SINGLE = Dist()  # one process: the collectives are the identity
Batch = tuple[torch.Tensor, torch.Tensor]  # (B, 3, S, S) uint8, (B,) int64


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class Stopped(Exception):
    """A stop was requested."""


class Hooks:
    """What the engine reports. Subclass and override; a True return from on_step/on_progress stops the run."""

    def on_progress(self, message: str) -> bool:  # a phase before training: "decoding images 120/640"
        return False

    def on_start(self, total_steps: int, classes: list[str], mean_std: tuple | None) -> None:
        pass

    def on_step(self, step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float) -> bool:
        return False

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        pass

    def on_checkpoint(self, state: dict, best: bool) -> None:  # lib/training/checkpoint.py says what is in it
        pass

    def close(self) -> None:  # the run is over: write anything buffered
        pass


@dataclass
class FitResult:
    status: Status = Status.RUNNING
    message: str = ""
    losses: list[float] = field(default_factory=list)  # every step's train loss, in order
    epochs: list[dict] = field(default_factory=list)  # one dict per finished epoch
    model: nn.Module | None = None
    mean_std: tuple | None = None
    best_val_loss: float = math.inf
    timings: Timings = field(default_factory=Timings)  # seconds per phase: decode, statistics, epochs, ...


@dataclass
class EpochStats:
    train_loss: float
    samples: int
    seconds: float
    step: int  # global step count after this epoch


# --- data --------------------------------------------------------------------------------------------


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


def decode_one(path: str, image_size: int) -> torch.Tensor:
    """One image as uint8 (3, S, S), through the one resize (lib.pixels.resize)."""
    return torch.from_numpy(decode_array(path, image_size).copy())


def decode_images(
    paths: Sequence[str],
    image_size: int,
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
    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
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
    paths: Sequence[str], image_size: int, *, decoded: torch.Tensor | None = None, dist: Dist = SINGLE
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

    def __init__(self, samples: Sequence[tuple[str, int]], image_size: int):
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
    image_size: int,
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


# --- the loop ----------------------------------------------------------------------------------------


def train_epoch(
    model: nn.Module,
    device: torch.device,
    loader: Iterable[Batch],
    optimizer,
    scheduler,
    epoch: int,
    prepare,
    hooks: Hooks,
    stop: threading.Event,
    step: int,
    max_batches: int | None = None,
    dist: Dist = SINGLE,
) -> EpochStats:
    """One pass over loader. Raises Diverged on a non-finite loss, Stopped when asked (checked every batch).

    With several processes the loss, the image count and the stop are the whole global batch's, on every rank.
    """
    model.train()
    total, seen, start = 0.0, 0, time.perf_counter()
    last = start
    for batch_idx, (data, target) in enumerate(loader):
        if max_batches is not None and batch_idx >= max_batches:
            break
        data, target = prepare(data, True), target.to(device)
        optimizer.zero_grad()
        value, count, loss = batch_loss(model(data), target, dist)
        if not math.isfinite(value):
            raise Diverged(f"The training loss became {value} at step {step + 1} (epoch {epoch})")
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        step, now = step + 1, time.perf_counter()
        total, seen = total + value * count, seen + count
        if dist.any(hooks.on_step(step, epoch, value, lr, count / max(now - last, 1e-9)) or stop.is_set()):
            raise Stopped()
        last = now
    return EpochStats(total / max(seen, 1), seen, time.perf_counter() - start, step)


def batch_loss(output: torch.Tensor, target: torch.Tensor, dist: Dist = SINGLE) -> tuple[float, int, torch.Tensor]:
    """(mean cross-entropy over the global batch, images in it, the loss this rank backpropagates).

    DDP averages gradients over ranks, so each rank's summed loss is scaled by world_size / global count:
    the update is then one process's on the whole batch, however the images fell between ranks.
    """
    if not dist.enabled:
        loss = F.cross_entropy(output, target)
        return loss.item(), len(target), loss
    loss_sum = F.cross_entropy(output, target, reduction="sum")  # (B_local, K) -> ()
    total, count = dist.sums([loss_sum.item(), len(target)])
    return total / count, int(count), loss_sum * (dist.world_size / count)


def evaluate(
    model: nn.Module,
    device: torch.device,
    loader: Iterable[Batch],
    prepare,
    max_batches: int | None = None,
    dist: Dist = SINGLE,
) -> tuple[float, float]:
    """(mean loss, accuracy) over loader: losses summed, then divided by the number of images.

    With several processes each rank evaluates its shard with rank 0's buffers, and the sums are all-reduced.
    """
    dist.sync_buffers(model)
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for batch_idx, (data, target) in enumerate(loader):
            if max_batches is not None and batch_idx >= max_batches:
                break
            data, target = prepare(data, False), target.to(device)
            output = model(data)  # (B, K)
            loss_sum += F.cross_entropy(output, target, reduction="sum").item()
            correct += (output.argmax(1) == target).sum().item()
            seen += len(target)
    loss_sum, correct, seen = dist.sums([loss_sum, correct, seen])
    return loss_sum / max(seen, 1), fraction(correct, seen)  # exact: Evaluate recomputes it with ==


# --- wiring a config ---------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """`auto` picks the accelerator torch finds (CUDA, MPS, XPU, ...), else the CPU.

    Raises:
        ValueError: when the named device is not available here.
    """
    found = accelerator()
    if name == "auto":
        return found or torch.device("cpu")
    if name != "cpu" and (found is None or found.type != name):
        raise ValueError(f"Device {name} is not available on this machine; choose auto or cpu.")
    return torch.device(name)


def accelerator() -> torch.device | None:
    """The accelerator this process would use, or None: torch.accelerator where torch offers it
    (2.6 and later), else CUDA, then MPS."""
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "current_accelerator"):
        return api.current_accelerator() if api.is_available() else None
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps") if mps is not None and mps.is_available() else None


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """A per-batch schedule: step (x0.1 at each third of training), cosine to zero, or one-cycle; None for none."""
    sched = torch.optim.lr_scheduler
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(2, total_steps))
    return None


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
    hooks: Hooks,
    *,
    cache_bytes: int,
    workers: int,
    device: torch.device | None = None,
    timings: Timings | None = None,
    decoding: Decoding | None = None,
    dist: Dist = SINGLE,
) -> Data:
    """Split, then decode once into memory if the images fit cache_bytes, else stream; pick mean/std.

    `decoding` is a decode of every sample, in order, already started (by the trainer, before its imports).
    With several processes every rank makes the same split and draws, and decodes only its shard.
    """
    timings = Timings() if timings is None else timings
    train_idx, val_idx = stratified_split([t for _, t in samples], config.val_split, config.seed)
    train_s, val_s = [samples[i] for i in train_idx], [samples[i] for i in val_idx]
    shuffle = torch.Generator().manual_seed(config.seed + 1)
    if fits_in_memory(math.ceil(len(samples) / dist.world_size), config.image_size, cache_bytes):
        if dist.enabled:
            data = _sharded_cached_data(config, train_s, val_s, hooks, shuffle, device, dist)
        else:
            data = _cached_data(config, samples, (train_idx, val_idx), hooks, shuffle, device, timings, decoding)
        data.shuffle = shuffle
        return data
    size, batch = config.image_size, config.batch_size
    train = streaming_batches(train_s, size, batch, shuffle=True, generator=shuffle, workers=workers, dist=dist)
    val = streaming_batches(val_s, size, batch, shuffle=False, generator=None, workers=workers, dist=dist)
    if config.normalization == "dataset":
        hooks.on_progress("computing normalization")
    with timings("statistics"):
        mean_std = normalization_for(config, [p for p, _ in train_s], None, dist)
    return Data(train, val, mean_std, False, val_s, shuffle)


def _cached_data(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    split: tuple[list[int], list[int]],
    hooks: Hooks,
    shuffle: torch.Generator,
    device: torch.device | None,
    timings: Timings,
    decoding: Decoding | None,
) -> Data:
    """Decode every image once; on CUDA the uint8 tensor then moves to the GPU, so a batch is a gather there."""
    train_s, val_s = [samples[i] for i in split[0]], [samples[i] for i in split[1]]
    with timings("decode"):
        images, bad = _decode_in_split_order(config, samples, split, hooks, decoding)
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
        hooks.on_progress(f"left out {len(bad)} images that do not decode")
    with timings("statistics"):
        mean_std = normalization_for(config, [p for p, _ in train_s], images[:n])  # on the CPU copy
    if device is not None and device.type == "cuda":
        images, targets = images.to(device), targets.to(device)
    train = TensorBatches(images[:n], targets[:n], config.batch_size, shuffle=True, generator=shuffle)
    val = TensorBatches(images[n:], targets[n:], config.batch_size, shuffle=False)
    dropped = {i - len(train_s) for i, _ in bad}
    return Data(train, val, mean_std, True, [s for i, s in enumerate(val_s) if i not in dropped])


def _decode_in_split_order(
    config: TrainConfig, samples: Sequence, split: tuple[list[int], list[int]], hooks: Hooks, decoding: Decoding | None
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """uint8 (N, 3, S, S), training images then validation ones, and (position, reason) of those that fail.

    The decode itself runs over `samples` in their order: a `decoding` started before the split was known
    (by the trainer, before its imports) is used as it is.
    """

    def progress(done: int, total: int) -> bool:
        return hooks.on_progress(f"decoding images {done}/{total}")

    found: list[tuple[int, str]] = []
    paths = [p for p, _ in samples]
    every = decode_images(paths, config.image_size, progress=progress, bad=found, decoding=decoding)
    order = split[0] + split[1]
    position = {sample: k for k, sample in enumerate(order)}
    return every[torch.tensor(order)], [(position[i], reason) for i, reason in found]


def normalization_for(
    config: TrainConfig, train_paths: list[str], decoded: torch.Tensor | None, dist: Dist = SINGLE
) -> tuple | None:
    """(mean, std) for the config's normalization: the training split's own, ImageNet's, or None."""
    if config.normalization == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if config.normalization == "dataset":
        return dataset_mean_std(train_paths, config.image_size, decoded=decoded, dist=dist)
    return None


def _sharded_cached_data(
    config: TrainConfig, train_s: list, val_s: list, hooks: Hooks, shuffle: torch.Generator, device, dist: Dist
) -> Data:
    """Several processes, in memory: this rank decodes the images the first epoch's draw gives it, once."""
    # The draw one process makes for its first epoch, from a copy: `shuffle` itself is drawn once per epoch
    # as the batches are iterated, so its state between epochs (saved in checkpoints) is one process's.
    first = tensor_order(len(train_s), torch.Generator().set_state(shuffle.get_state()))
    train, train_images, _ = _decoded_shard(config, train_s, first, shuffle, hooks, device, dist)
    val, _, val_bad = _decoded_shard(config, val_s, torch.arange(len(val_s)), None, hooks, device, dist)
    mean_std = normalization_for(config, [], train_images, dist)
    dropped = {i for part in dist.gather(val_bad) for i in part}  # every rank's, for the checkpoint's split
    return Data(train, val, mean_std, True, [s for i, s in enumerate(val_s) if i not in dropped])


def _decoded_shard(config, samples, first, generator, hooks, device, dist: Dist):
    """(ShardTensorBatches over this rank's images, its decoded uint8 images that decode (on the CPU), the
    indices into samples of those that do not)."""
    slices = batch_slices(len(samples), config.batch_size, dist)
    owned = torch.cat([first[s] for s in slices]) if slices else first[:0]  # (N_local,) indices into samples

    def progress(done: int, total: int) -> bool:
        # A stop asked now acts at the first batch, where all ranks agree; one rank stopping alone would hang.
        hooks.on_progress(f"decoding images {done}/{total} (rank {dist.rank}'s share of {dist.world_size})")
        return False

    bad: list[tuple[int, str]] = []
    images = decode_images([samples[i][0] for i in owned], config.image_size, progress=progress, bad=bad)
    targets = torch.tensor([samples[i][1] for i in owned], dtype=torch.int64)
    bad_rows = [i for i, _ in bad]
    good = torch.ones(len(owned), dtype=torch.bool)
    good[bad_rows] = False
    kept = images[good]
    if device is not None and device.type == "cuda":
        images, targets = images.to(device), targets.to(device)
    train = generator is not None
    batches = ShardTensorBatches(images, targets, owned, first, slices, generator, bad=bad_rows, train=train)
    return batches, kept, [int(owned[i]) for i in bad_rows]


def fit(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    classes: list[str],
    hooks: Hooks | None = None,
    stop: threading.Event | None = None,
    *,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    workers: int = 2,
    model_fn: Callable[..., nn.Module] = build_model,
    decoding: Decoding | None = None,
    start: dict | None = None,
    dist: Dist = SINGLE,
) -> FitResult:
    """Train config on samples [(path, class index)]; never raises, the outcome is in result.status/message.

    `decoding`: a decode of every sample already under way (see prepare_data). With `start` (a checkpoint
    dict, lib/training/checkpoint.py) training continues from it up to config.epochs in all: weights,
    optimizer state, the generators' states and the step count are restored, and the schedule is the one
    a run of config.epochs would follow (lib/training/resume.py). `dist`: this process's rank when the run
    spans several (lib.training.distributed); every rank calls fit.
    """
    hooks, stop, result = hooks or Hooks(), stop or threading.Event(), FitResult()
    try:
        loading = (cache_bytes, workers, decoding, dist)
        _fit(config, samples, classes, hooks, stop, result, loading, model_fn, start)
        result.status, result.message = Status.COMPLETED, f"Trained {len(result.epochs)} epochs."
    except Diverged as e:
        result.status = Status.DIVERGED
        result.message = (
            f"{e}. Lower the learning rate (try {config.lr / 10:g}), use the onecycle or cosine "
            "schedule, or turn normalization on."
        )
    except Stopped:
        # A stop event may say why (a time limit) and how the run ends (`interrupted` when its server went away).
        result.status = getattr(stop, "status", Status.STOPPED)
        result.message = getattr(stop, "reason", "") or f"Stopped after {len(result.losses)} steps on request."
    except Exception as e:  # noqa: BLE001 - any failure ends the run as `failed`, with its reason
        # A ValueError is already a sentence for the user; anything else keeps its type for a bug report.
        result.status, result.message = (
            Status.FAILED,
            str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}",
        )
    return result


def _fit(config, samples, classes, hooks, stop, result, loading, model_fn, start=None) -> None:
    (cache_bytes, workers, decoding, dist), timed = loading, result.timings
    device = dist.place(resolve_device(config.device))
    data = prepare_data(
        config,
        samples,
        hooks,
        cache_bytes=cache_bytes,
        workers=workers,
        device=device,
        timings=timed,
        decoding=decoding,
        dist=dist,
    )
    if start is not None:
        same_split(start, data.val_samples)
        data.mean_std = (tuple(start["mean"]), tuple(start["std"])) if start.get("mean") is not None else None
    result.mean_std = data.mean_std
    per_epoch = min(len(data.train), config.max_batches or len(data.train))
    # Each rank its own draws (rank 0 keeps the single-process ones): ranks augment different images alike otherwise.
    augment = augmentation_generator(dist.rank_seed(config.seed))
    with timed("model"):  # the model, its optimizer and schedule
        torch.manual_seed(config.seed)  # weight init
        model = model_fn(config.model, len(classes), config.image_size, pretrained=config.pretrained).to(device)
        trained = dist.wrap(model, device)  # DistributedDataParallel with several processes, else model itself
        model = trained.module if dist.enabled else model  # the plain module: evaluated, saved for one process
        optimizer = make_optimizer(config, model.parameters())
        begin = (
            resume_point(start, model, optimizer, data.shuffle, augment, per_epoch, hooks.on_progress)
            if start
            else None
        )
        # Built after the optimizer state is restored, then advanced to the resumed step: the schedule an
        # uninterrupted run of config.epochs follows (make_scheduler's own first step is step 0).
        scheduler = make_scheduler(config, optimizer, per_epoch * config.epochs)
        first_epoch, step0, skip = (begin.epoch, begin.step, begin.skip) if begin else (1, 0, 0)
        advance(scheduler, step0)
    result.model = model
    prepare = batch_preparer(device, data.mean_std, config.augmentation(), augment)
    hooks.on_start(per_epoch * config.epochs, classes, data.mean_std)
    recorder = _Recorder(hooks, result.losses)

    def checkpoint(epoch: int, metrics: dict | None, best: bool, shuffle_state, partial: bool = False) -> None:
        rng = {"shuffle": shuffle_state, "augment": augment.get_state()}
        with timed("checkpoint"):
            state = make_checkpoint(
                model, optimizer, scheduler, config=config, classes=classes, mean_std=data.mean_std,
                val_samples=data.val_samples, epoch=epoch, step=step0 + len(result.losses), metrics=metrics,
                partial=partial, rng=rng,
            )  # fmt: skip
            hooks.on_checkpoint(state, best=best)

    for epoch in range(first_epoch, config.epochs + 1):
        epoch_start = data.shuffle.get_state() if data.shuffle is not None else None
        loader, batches = (skipping(data.train, skip), per_epoch - skip) if skip else (data.train, config.max_batches)
        skip = 0
        try:
            with timed("epochs"):  # training and validation passes, steps written to the hooks as they go
                stats = train_epoch(
                    trained, device, loader, optimizer, scheduler, epoch, prepare, recorder, stop,
                    step0 + len(result.losses), batches, dist,
                )  # fmt: skip
                val_loss, val_accuracy = validation_pass(model, device, data.val, prepare, config, dist)
        except Stopped:
            checkpoint(epoch - 1, None, False, epoch_start, partial=True)  # resume from here
            raise
        metrics = dict(
            epoch=epoch,
            train_loss=stats.train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            lr=optimizer.param_groups[0]["lr"],
            samples_per_sec=stats.samples / max(stats.seconds, 1e-9),
        )
        result.epochs.append(metrics)
        hooks.on_epoch(epoch, metrics)
        check_validation_loss(val_loss, len(classes), epoch)  # a diverged epoch's weights are not checkpointed
        best = val_loss < result.best_val_loss
        result.best_val_loss = min(val_loss, result.best_val_loss)
        after = data.shuffle.get_state() if data.shuffle is not None else None  # = the next epoch's start
        checkpoint(epoch, metrics, best, after)


def skipping(loader: Iterable[Batch], skip: int) -> Iterator[Batch]:
    """loader's batches after the first `skip` (resuming mid-epoch: the order is drawn as usual, then skipped)."""
    for i, batch in enumerate(loader):
        if i >= skip:
            yield batch


def advance(scheduler, steps: int) -> None:
    """Step a fresh scheduler `steps` times without training, so its learning rate is the one an
    uninterrupted run reaches there (the same recursion, so the same floats)."""
    if scheduler is None or steps == 0:
        return
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            scheduler.step()


EXPLODED_LOSS = 100.0  # x ln(classes), the loss of a uniform guess: far past any model that merely overfits


def check_validation_loss(val_loss: float, num_classes: int, epoch: int) -> None:
    """Raises Diverged when the validation loss is not finite or explodes (over EXPLODED_LOSS x chance),
    as plain sgd at lr 10 does while the training loss can still look finite."""
    chance = math.log(max(num_classes, 2))
    if not math.isfinite(val_loss):
        raise Diverged(f"The validation loss became {val_loss} at epoch {epoch}")
    if val_loss > EXPLODED_LOSS * chance:
        raise Diverged(
            f"The validation loss became {val_loss:,.0f} at epoch {epoch} (a uniform guess scores {chance:.2f}; "
            f"over {EXPLODED_LOSS * chance:,.0f} counts as diverged)"
        )


def evaluate_checkpoint(loaded: LoadedRun, *, workers: int | None = None) -> tuple[float, float]:
    """(val_loss, val_accuracy) of a rebuilt run on its stored validation split, batched as training did.

    Raises:
        ValueError: when stored validation images are missing or no longer decode (names the first few).
    """
    samples = loaded.val_samples()
    if not samples:
        raise ValueError(f"Run {loaded.run_id} stored no validation split; retrain it to evaluate.")
    missing = [p for p, _ in samples if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"{len(missing)} validation images are gone, e.g. {', '.join(missing[:3])}; restore the dataset folder."
        )
    images = decode_images([p for p, _ in samples], loaded.config.image_size, workers=workers)
    targets = torch.tensor([t for _, t in samples])
    val = TensorBatches(images, targets, loaded.config.batch_size, shuffle=False)
    prepare = batch_preparer(loaded.device, loaded.mean_std, None)
    return validation_pass(loaded.model, loaded.device, val, prepare, loaded.config)


def validation_pass(
    model: nn.Module, device: torch.device, val: Iterable[Batch], prepare, config: TrainConfig, dist: Dist = SINGLE
):
    """The validation a run records each epoch; evaluate_checkpoint repeats exactly this on a rebuilt model.

    Always the whole validation set, whatever max_batches caps in training: the split is ordered by
    class, so its first batches can hold a single class and report 100 % on it. With several processes
    each rank evaluates its shard and the sums are all-reduced.
    """
    return evaluate(model, device, val, prepare, dist=dist)


class _Recorder(Hooks):
    """Keeps every step's loss in the result, then passes the step on."""

    def __init__(self, inner: Hooks, losses: list[float]):
        self.inner, self.losses = inner, losses

    def on_step(self, step, epoch, train_loss, lr, samples_per_sec) -> bool:
        self.losses.append(train_loss)
        return self.inner.on_step(step, epoch, train_loss, lr, samples_per_sec)


def idle_cores() -> int:
    """Torch intra-op threads for a trainer: the cores this process may use that the 1-minute load
    average leaves free, at least 1.

    A thread beyond those waits for a time slice at every op: on 2 cores at load 14, a second thread
    made `linear` and `cnn` steps 5 to 15 times slower than one.
    """
    cores = default_threads()
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # not offered here (Windows has no getloadavg)
        return cores
    return max(1, min(cores, cores - math.floor(busy)))


def default_threads() -> int:
    """Torch intra-op threads for a trainer: the cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

"""How much of a pretrained model trains: `head` (a linear probe on the frozen backbone) or `full`.

Head mode freezes every backbone parameter and keeps the backbone in eval mode, BatchNorm statistics
included, so its tensors end bit-identical to the weights file. When one process trains and there is no
augmentation, each image's features (the head's input) are computed once (images too many to keep decoded
are decoded for that one pass) and the epochs train the head alone on them: a cache keyed by model, weights
(the backbone's tensors), size, normalization and the images (pixels, or the files when streamed), kept in
memory within the cache budget, else on disk (written atomically; a damaged file is computed again; the folder
kept under FEATURE_CACHE_MB, least recently used files removed first). With augmentation every
augmented view is new, so nothing is cached: the frozen backbone runs at every step (full-forward speed).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from lib.training.batches import Data, TensorBatches, streaming_batches
from lib.training.config import TrainConfig
from lib.training.loop import Stopped
from lib.training.models import head_module, head_path

Prepare = Callable[[torch.Tensor, bool], torch.Tensor]

FEATURE_CACHE_MB = 4096  # the disk cache's size (TORCHSCOPE_FEATURE_CACHE_MB); the least recently used go first


class FrozenBackbone(nn.Module):
    """model, of which only `head` trains: train() leaves everything else in eval mode."""

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model, self.head = model, head
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> FrozenBackbone:
        self.training = mode
        self.model.eval()
        self.head.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class HeadOnFeatures(nn.Module):
    """The head alone, mapping cached features (the head's input) to logits (B, K)."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).flatten(1)  # squeezenet's head ends (B, K, 1, 1)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """What the optimizer updates: the head alone in head mode; else every parameter, the backbone's at
    lr x backbone_lr_scale."""
    head = head_module(model, config.model)
    head_ids = {id(p) for p in head.parameters()}
    if config.finetune == "head":
        return [{"params": list(head.parameters())}]
    if config.backbone_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": backbone, "lr": config.lr * config.backbone_lr_scale}, {"params": list(head.parameters())}]


def head_features(
    model: nn.Module, head: nn.Module, images: torch.Tensor, prepare: Prepare, batch: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:  # fmt: skip
    """The head's input for every image (N, ...): the backbone in eval mode, batch by batch, on the CPU.
    `progress(images done)` after each batch."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().cpu()))
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                model(prepare(images[i : i + batch], False))
                if progress:
                    progress(min(i + batch, len(images)))
    finally:
        handle.remove()
    return torch.cat(seen) if seen else torch.empty(0)


PROGRESS_EVERY_S = 0.5  # the feature pass reports (and reads a stop) at most this often, and at its end


def feature_progress(count: int, note) -> Callable[[int], None]:
    """`progress(done)` for a feature pass over `count` images: says "computing features done/count" through
    `note` (Hooks.on_progress) at most every PROGRESS_EVERY_S and at the end; raises Stopped when note asks."""
    last = [0.0]

    def progress(done: int) -> None:
        now = time.monotonic()
        if done < count and now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        if note(f"computing features {done:,}/{count:,}"):
            raise Stopped()

    return progress


def cache_key(config: TrainConfig, mean_std, model: nn.Module, content: torch.Tensor | list[str]) -> str:
    """What produced the features: the model's name and its backbone's tensors (the weights as loaded, so a
    weights file replaced under the same name is a new key), the resize (size, crop, filter), the normalization
    and the images: `content` is their decoded pixels (N, 3, S, S) uint8, or, streamed from disk, their files."""
    h = hashlib.sha256(repr((config.model, config.resizing(), mean_std)).encode())  # size, resize and crop
    head = head_path(model, config.model) + "."
    for name, tensor in model.state_dict().items():
        if not name.startswith(head):  # the new head is the seed's draw: it does not change the features
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    if isinstance(content, torch.Tensor):
        h.update(content.contiguous().numpy())  # the buffer itself: no copy of every image
    else:
        for path in content:  # the files' bytes: far cheaper to read than to decode
            h.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return h.hexdigest()[:32]


@dataclass
class Features:
    data: Data  # train/val over features instead of images
    model: nn.Module  # what trains and validates: the head on features
    prepare: Prepare


def feature_data(config, data: Data, model: nn.Module, prepare: Prepare, *, cache_bytes: int, device, note) -> Features:
    """data's images replaced by their cached backbone features (computed now unless on disk already).

    Images in memory are keyed by their pixels; streamed ones (over the cache budget) by their files, and
    decoded once, batch by batch, for the one feature pass."""
    head = head_module(model, config.model)
    if isinstance(data.train, TensorBatches):
        images = torch.cat([data.train.images.cpu(), data.val.images.cpu()])
        train_targets, val_targets = data.train.targets, data.val.targets
        key, count = cache_key(config, data.mean_std, model, images), len(images)

        def compute() -> torch.Tensor:
            return head_features(model, head, images, prepare, config.batch_size, feature_progress(count, note))
    else:  # DataLoaders over lib.training.batches.DecodingDataset
        train_s, val_s = data.train.dataset.samples, data.val.dataset.samples
        train_targets, val_targets = (torch.tensor([t for _, t in s]) for s in (train_s, val_s))
        key, count = cache_key(config, data.mean_std, model, [p for p, _ in train_s + val_s]), len(train_s + val_s)
        loader = streaming_batches(train_s + val_s, config.resizing(), config.batch_size, shuffle=False,
                                   generator=None, workers=data.train.num_workers)  # fmt: skip

        def compute() -> torch.Tensor:
            progress, parts, done = feature_progress(count, note), [], 0
            for x, _ in loader:
                parts.append(head_features(model, head, x, prepare, config.batch_size))
                done += len(x)
                progress(done)
            return torch.cat(parts)

    features = _cached(key, count, cache_bytes, note, compute)
    n = len(train_targets)
    if device.type == "cuda":  # a batch is then a gather on the GPU, as for decoded images
        features, train_targets, val_targets = (t.to(device) for t in (features, train_targets, val_targets))
    batches = dict(batch_size=config.batch_size)
    data.train = TensorBatches(features[:n], train_targets, shuffle=True, generator=data.shuffle, **batches)
    data.val = TensorBatches(features[n:], val_targets, shuffle=False, **batches)
    return Features(data, HeadOnFeatures(head), lambda x, _train: x.to(device, non_blocking=True))


def _cached(key: str, count: int, cache_bytes: int, note, compute) -> torch.Tensor:
    """Features from the disk cache, else computed (and written there when they exceed the memory budget)."""
    from lib.settings import cache_dir

    path = cache_dir() / "features" / f"{key}.pt"
    if path.is_file():
        try:
            features = torch.load(path, weights_only=True, mmap=True)
            note("features from the cache")
            os.utime(path)  # used now: the last to be removed
            return features
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):  # damaged: computed again, rewritten
            path.unlink(missing_ok=True)
    note(f"computing features of {count:,} images once")
    features = compute()
    if features.numel() * features.element_size() > cache_bytes:  # over budget: kept on disk, memory-mapped
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")  # a run that dies mid-write leaves no half file
        torch.save(features, partial)
        os.replace(partial, path)
        trim_cache(path.parent, keep=path)
        return torch.load(path, weights_only=True, mmap=True)
    return features


def trim_cache(folder: Path, *, keep: Path, limit_mb: int | None = None) -> list[Path]:
    """Remove the least recently used feature files (by modification time, which a read renews) until the
    folder holds at most `limit_mb` (TORCHSCOPE_FEATURE_CACHE_MB, else FEATURE_CACHE_MB); `keep` stays even when
    alone over it. Returns what was removed. Files another run removes meanwhile are skipped."""
    if limit_mb is None:
        raw = os.environ.get("TORCHSCOPE_FEATURE_CACHE_MB", "")
        limit_mb = int(raw) if raw.strip().isdigit() else FEATURE_CACHE_MB
    files = []
    for f in folder.glob("*.pt"):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        files.append((st.st_mtime_ns, st.st_size, f))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, f in sorted(files, key=lambda t: t[0]):  # oldest use first
        if total <= limit_mb * 2**20:
            break
        if f != keep:
            f.unlink(missing_ok=True)  # a run reading it memory-mapped keeps its pages
            total -= size
            removed.append(f)
    return removed


def stepped_model(
    config: TrainConfig, data: Data, model: nn.Module, prepare: Prepare, *, dist, cache_bytes: int, device, note
) -> tuple[nn.Module, Prepare]:
    """What each step runs and how a batch reaches it: in head mode the head on cached features where they
    apply (data's batches become features), else the model beside its frozen backbone; otherwise model."""
    if config.finetune != "head":
        return model, prepare
    if cached_features_apply(config, data, dist):
        features = feature_data(config, data, model, prepare, cache_bytes=cache_bytes, device=device, note=note)
        return features.model, features.prepare
    return FrozenBackbone(model, head_module(model, config.model)), prepare


def cached_features_apply(config: TrainConfig, data: Data, dist) -> bool:
    """Whether head mode can train on cached features: one process, no augmentation, the images in memory or
    streamed by one process's DataLoader."""
    return (
        config.finetune == "head"
        and not dist.enabled
        and not config.augmentation().enabled
        and isinstance(data.train, TensorBatches | DataLoader)
    )

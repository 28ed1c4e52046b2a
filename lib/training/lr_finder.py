"""The learning-rate range test (Smith, 2017, "Cyclical Learning Rates", section 3.3): train a fresh model
for about 100 batches while the learning rate grows exponentially from `start_lr` to `end_lr`, record the
loss of each batch, and suggest a learning rate from the smoothed curve. Nothing is written to the run
store: the model is thrown away.

The rule: the loss is smoothed with a debiased exponential moving average (weight `smoothing`, as the
Train page's slider); the sweep stops early once the smoothed loss exceeds `diverge_factor` (4) times its
minimum so far, or becomes non-finite. The suggestion is the learning rate where the smoothed loss falls
fastest against log(lr) (its most negative slope), looked for between the end of the EMA's warm-up and
the smoothed minimum; when that stretch is shorter than 3 points, the minimum's learning rate / 10.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lib.charts.series import ema
from lib.pixels.transforms import augmentation_generator
from lib.training.batches import DEFAULT_CACHE_BYTES, batch_preparer, prepare_data, quiet
from lib.training.config import TrainConfig
from lib.training.device import resolve_device
from lib.training.distributed import SINGLE
from lib.training.finetune import parameter_groups, stepped_model
from lib.training.loop import Batch
from lib.training.models import build_model
from lib.training.optim import make_optimizer

RULE = "steepest descent of the smoothed loss against log(lr), before its minimum (else the minimum's lr / 10)"


@dataclass(frozen=True)
class LRFinderConfig:
    """The sweep's knobs. Raises ValueError (one sentence) on a bad value."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_batches: int = 100
    smoothing: float = 0.9  # EMA weight of the smoothed loss
    diverge_factor: float = 4.0  # stop once the smoothed loss exceeds this times its minimum

    def __post_init__(self):
        if not 0 < self.start_lr < self.end_lr < math.inf:
            raise ValueError(f"Choose 0 < start lr < end lr, got {self.start_lr:g} and {self.end_lr:g}.")
        if isinstance(self.num_batches, bool) or not isinstance(self.num_batches, int) or self.num_batches < 10:
            raise ValueError(f"The sweep needs at least 10 batches, got {self.num_batches!r}.")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"Smoothing must be at least 0 and below 1, got {self.smoothing}.")
        if not self.diverge_factor > 1:
            raise ValueError(f"The divergence factor must be above 1, got {self.diverge_factor}.")

    def lr_at(self, i: int) -> float:
        """The learning rate of batch i (0-based): start * (end / start) ** (i / (num_batches - 1))."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_batches - 1))


@dataclass
class LRFinderResult:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # each batch's loss, raw
    smoothed: list[float] = field(default_factory=list)
    suggested_lr: float | None = None
    stopped_early: bool = False  # the smoothed loss exceeded diverge_factor x its minimum (or went non-finite)
    rule: str = RULE

    def to_dict(self) -> dict:
        return {
            "suggested_lr": self.suggested_lr,
            "lrs": self.lrs,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "stopped_early": self.stopped_early,
            "rule": self.rule,
        }


def find_lr(
    config: TrainConfig,
    samples: Sequence[tuple[str, int]],
    classes: list[str],
    finder: LRFinderConfig | None = None,
    *,
    progress: Callable[[int, int], object] | None = None,
    stop: threading.Event | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    workers: int = 2,
) -> LRFinderResult:
    """Run the range test with config's model, optimizer, batch size, augmentation and normalization
    (config.lr and config.schedule are replaced by the sweep) on a fresh model seeded by config.seed.

    Raises:
        ValueError: for data that cannot be split or a device that is not there (as training does).
    """
    finder = finder or LRFinderConfig()
    device = resolve_device(config.device)
    data = prepare_data(config, samples, cache_bytes=cache_bytes, workers=workers, device=device)
    torch.manual_seed(config.seed)
    model = build_model(config.model, len(classes), config.image_size, weights=config.weights_name).to(device)
    prepare = batch_preparer(device, data.mean_std, config.augmentation(), augmentation_generator(config.seed))
    # As training steps: head mode trains the head alone (on cached features where they apply).
    stepped, prepare = stepped_model(config, data, model, prepare, dist=SINGLE, cache_bytes=cache_bytes,
                                     device=device, note=quiet)  # fmt: skip
    optimizer = make_optimizer(config, parameter_groups(model, config))
    scales = [group["lr"] / config.lr for group in optimizer.param_groups]  # --backbone-lr-scale
    result = LRFinderResult()
    stepped.train()
    for i, (x, y) in enumerate(_endless(data.train)):
        if i >= finder.num_batches or (stop is not None and stop.is_set()):
            break
        lr = finder.lr_at(i)
        for group, scale in zip(optimizer.param_groups, scales):
            group["lr"] = lr * scale
        optimizer.zero_grad()
        loss = F.cross_entropy(stepped(prepare(x, True)), y.to(device))
        value = loss.item()
        if math.isfinite(value):
            loss.backward()
            optimizer.step()
        result.lrs.append(lr)
        result.losses.append(value)
        if progress is not None:
            progress(i + 1, finder.num_batches)
        if _diverged(result, finder.smoothing, finder.diverge_factor):
            result.stopped_early = True
            break
    result.suggested_lr = suggest_lr(result.lrs, result.smoothed)
    return result


def _endless(loader) -> Iterator[Batch]:
    """Batches from loader, pass after pass (a small dataset has fewer than 100 batches an epoch)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


def _diverged(result: LRFinderResult, weight: float, factor: float) -> bool:
    """Re-smooth the losses (the Train page's debiased EMA); True when the newest smoothed loss is
    non-finite or above factor x the minimum so far."""
    result.smoothed = ema(np.asarray(result.losses), weight).tolist()
    newest = result.smoothed[-1]
    return not math.isfinite(newest) or newest > factor * np.nanmin(result.smoothed)


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float], warmup: int = 5) -> float | None:
    """The module docstring's rule: the lr of the most negative slope of smoothed loss vs log(lr) between
    the warm-up and the smoothed minimum; the minimum's lr / 10 when that stretch is under 3 points."""
    y = np.asarray(smoothed, dtype=float)
    if len(y) == 0 or not np.isfinite(y).any():
        return None
    low = int(np.nanargmin(y))
    start = min(warmup, low)
    if low - start + 1 < 3:
        return float(lrs[low]) / 10
    x = np.log(np.asarray(lrs[start : low + 1], dtype=float))
    slope = np.gradient(y[start : low + 1], x)
    return float(lrs[start + int(np.argmin(slope))])

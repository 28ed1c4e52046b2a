"""The loop, pytorch/examples mnist style: `train_epoch` and `evaluate` take everything as arguments.

A run ends early by raising: Diverged on a non-finite or exploded loss, Stopped when a stop is asked
(during the decode or after any batch). lib.training.engine.fit turns either into the run's status.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lib.training.counts import fraction
from lib.training.distributed import SINGLE, Dist

Batch = tuple[torch.Tensor, torch.Tensor]  # (B, 3, S, S) uint8, (B,) int64
# (step, epoch, train_loss, lr, samples_per_sec) -> True to stop: Hooks.on_step
OnStep = Callable[[int, int, float, float, float], bool]
# (step, epoch, {name: value}): a step's other metrics (its training accuracy): Hooks.on_metrics
OnMetrics = Callable[[int, int, dict], None]


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class Stopped(Exception):
    """A stop was requested."""


@dataclass
class EpochStats:
    train_loss: float
    train_accuracy: float  # of the batches' own logits, in training mode (no extra pass)
    samples: int
    seconds: float
    step: int  # global step count after this epoch


def train_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler,
    prepare: Callable[[torch.Tensor, bool], torch.Tensor],
    device: torch.device,
    epoch: int,
    step: int,
    on_step: OnStep,
    stop: threading.Event,
    max_batches: int | None = None,
    dist: Dist = SINGLE,
    on_metrics: OnMetrics | None = None,
    recorder=None,
) -> EpochStats:
    """One pass over loader. Raises Diverged on a non-finite loss, Stopped when asked (checked every batch).

    `step` is the global step count before this epoch. With several processes the loss, the image count
    and the stop are the whole global batch's, on every rank. `recorder` (lib.runs.recorder.Recorder)
    sees every step's gradients and update; `on_metrics` gets each step's training accuracy.
    """
    model.train()
    total, hits, seen, start = 0.0, 0, 0, time.perf_counter()
    last = start
    for batch_idx, (data, target) in enumerate(loader):
        if max_batches is not None and batch_idx >= max_batches:
            break
        data, target = prepare(data, True), target.to(device)
        optimizer.zero_grad()
        output = model(data)  # (B, K)
        value, count, loss = batch_loss(output, target, dist)
        if not math.isfinite(value):
            raise Diverged(f"The training loss became {value} at step {step + 1} (epoch {epoch})")
        loss.backward()
        if recorder is not None:
            recorder.before_update()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        step, now = step + 1, time.perf_counter()
        correct = batch_correct(output, target, dist)
        total, hits, seen = total + value * count, hits + correct, seen + count
        if recorder is not None:
            recorder.after_update(step, epoch)
        if on_metrics is not None:
            on_metrics(step, epoch, {"train_accuracy": fraction(correct, count)})
        if dist.any(on_step(step, epoch, value, lr, count / max(now - last, 1e-9)) or stop.is_set()):
            raise Stopped()
        last = now
    return EpochStats(total / max(seen, 1), fraction(hits, seen), seen, time.perf_counter() - start, step)


def batch_correct(output: torch.Tensor, target: torch.Tensor, dist: Dist = SINGLE) -> int:
    """Images of the (global) batch whose largest logit is their class."""
    correct = int((output.detach().argmax(1) == target).sum().item())
    return int(dist.sums([correct])[0]) if dist.enabled else correct


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


def validation_pass(
    model: nn.Module, device: torch.device, val: Iterable[Batch], prepare, dist: Dist = SINGLE
) -> tuple[float, float]:
    """The validation a run records each epoch; evaluate_checkpoint repeats exactly this on a rebuilt model.

    Always the whole validation set, whatever max_batches caps in training: the split is ordered by
    class, so its first batches can hold a single class and report 100 % on it. With several processes
    each rank evaluates its shard and the sums are all-reduced.
    """
    return evaluate(model, device, val, prepare, dist=dist)


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

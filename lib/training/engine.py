"""`fit`: a TrainConfig wired to data, model, optimizer and schedule, reported through Hooks.

A run always ends in a status: `completed`; `diverged` (non-finite loss, with what to try); `stopped`
(stop event or a hook asking, checked after every batch); `failed` (any exception, with its message).
Metrics reach the hooks as they happen, so whatever ran is kept in every case. Deterministic under
config.seed: the split, the weight init, the shuffling and the augmentation each draw from their own
seeded generator. The rooms it wires: lib.training.batches (split, decode, batches), .loop (train_epoch,
evaluate, divergence), .optim (optimizer, schedule), .device (device, threads).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from lib.pixels.decode import Decoding
from lib.pixels.transforms import augmentation_generator
from lib.runs.recorder import Recorder, record_every
from lib.runs.status import Status
from lib.training.batches import (
    DEFAULT_CACHE_BYTES,
    Data,
    TensorBatches,
    batch_preparer,
    decode_images,
    prepare_data,
    skipping,
)
from lib.training.checkpoint import LoadedRun, make_checkpoint
from lib.training.config import TrainConfig
from lib.training.device import resolve_device
from lib.training.distributed import SINGLE, Dist
from lib.training.finetune import parameter_groups, stepped_model
from lib.training.loop import Diverged, OnStep, Stopped, check_validation_loss, train_epoch, validation_pass
from lib.training.models import build_model
from lib.training.optim import advance, make_optimizer, make_scheduler
from lib.training.resume import Begin, resume_point, same_split
from lib.training.timings import Timings


class Hooks:
    """What the engine reports. Subclass and override; a True return from on_step/on_progress stops the run."""

    def on_progress(self, message: str) -> bool:  # a phase before training: "decoding images 120/640"
        return False

    def on_start(self, total_steps: int, classes: list[str], mean_std: tuple | None) -> None:
        pass

    def on_step(self, step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float) -> bool:
        return False

    def on_metrics(self, step: int, epoch: int, metrics: dict) -> None:  # a step's training accuracy
        pass

    def on_layers(self, kind: str, rows: list[tuple]) -> None:  # lib/runs/recorder.py: what each kind holds
        pass

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
        run = _setup(config, samples, classes, hooks, result, cache_bytes=cache_bytes, workers=workers,
                     decoding=decoding, dist=dist, model_fn=model_fn, start=start)  # fmt: skip
        _train(run, hooks, stop, result)
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


@dataclass
class _Run:
    """Everything the epoch loop needs, wired by _setup."""

    config: TrainConfig
    classes: list[str]
    data: Data
    device: torch.device
    dist: Dist
    model: nn.Module  # the plain module: saved in checkpoints
    trained: nn.Module  # what the steps run: DistributedDataParallel with several processes, else `evaluated`
    evaluated: nn.Module  # what validates: model, or its head alone on cached features (head mode)
    prepare: Callable  # (batch, train) -> the input `evaluated` takes, on device
    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch LR scheduler, or None
    augment: torch.Generator  # the augmentation's draws; its state goes into checkpoints
    per_epoch: int  # batches per epoch
    begin: Begin  # the first epoch, the steps before it, the batches of it already trained
    recorder: Recorder | None = None  # the layers' norms, histograms and dead units (lib/runs/recorder.py)


def _setup(
    config, samples, classes, hooks: Hooks, result: FitResult, *, cache_bytes, workers, decoding, dist: Dist,
    model_fn, start,
) -> _Run:  # fmt: skip
    """Data, then the model, its optimizer and schedule (restored from `start` when given); sets
    result.mean_std and result.model."""
    device = dist.place(resolve_device(config.device))
    data = prepare_data(
        config, samples, cache_bytes=cache_bytes, workers=workers, progress=hooks.on_progress, device=device,
        timings=result.timings, decoding=decoding, dist=dist,
    )  # fmt: skip
    if start is not None:  # a continued run: the same split, and its parent's mean/std
        same_split(start, data.val_samples)
        data.mean_std = (tuple(start["mean"]), tuple(start["std"])) if start.get("mean") is not None else None
    result.mean_std = data.mean_std
    with result.timings("model"):  # the model, its optimizer and schedule
        run = _model(config, classes, data, device=device, dist=dist, model_fn=model_fn, start=start,
                     note=hooks.on_progress, cache_bytes=cache_bytes)  # fmt: skip
    result.model = run.model
    return run


def _model(config, classes, data: Data, *, device, dist: Dist, model_fn, start, note, cache_bytes) -> _Run:
    """The model on device, its optimizer and schedule; restored from `start` when given. Head mode trains
    the head on cached features where lib.training.finetune can cache them, else beside a frozen backbone."""
    per_epoch = min(len(data.train), config.max_batches or len(data.train))
    # Each rank its own draws (rank 0 keeps the single-process ones): ranks augment different images alike otherwise.
    augment = augmentation_generator(dist.rank_seed(config.seed))
    torch.manual_seed(config.seed)  # weight init
    model = model_fn(config.model, len(classes), config.image_size, weights=config.weights_name).to(device)
    prepare = batch_preparer(device, data.mean_std, config.augmentation(), augment)
    stepped, prepare = stepped_model(config, data, model, prepare, dist=dist, cache_bytes=cache_bytes, device=device,
                                     note=note)  # fmt: skip
    trained = dist.wrap(stepped, device)  # DistributedDataParallel with several processes, else stepped itself
    optimizer = make_optimizer(config, parameter_groups(model, config))
    begin = Begin(epoch=1, step=0, skip=0)
    if start:
        begin = resume_point(start, model, optimizer, data.shuffle, augment, per_epoch, note)
    # Built after the optimizer state is restored, then advanced to the resumed step: the schedule an
    # uninterrupted run of config.epochs follows (make_scheduler's own first step is step 0).
    scheduler = make_scheduler(config, optimizer, per_epoch * config.epochs)
    advance(scheduler, begin.step)
    return _Run(config, classes, data, device, dist, model=model, trained=trained, evaluated=stepped, prepare=prepare,
                optimizer=optimizer, scheduler=scheduler, augment=augment, per_epoch=per_epoch,
                begin=begin)  # fmt: skip


def _train(run: _Run, hooks: Hooks, stop: threading.Event, result: FitResult) -> None:
    """The epochs from run.begin to config.epochs: train, validate, report, check, checkpoint."""
    config, data = run.config, run.data
    prepare = run.prepare
    hooks.on_start(run.per_epoch * config.epochs, run.classes, data.mean_std)
    on_step = _recording(hooks, result.losses)
    run.recorder = _recorder(run, hooks)
    try:
        for epoch in range(run.begin.epoch, config.epochs + 1):
            _train_one(run, epoch, prepare, hooks, on_step, stop, result)
    finally:  # completed, diverged or stopped: the last step is recorded
        if run.recorder is not None:
            run.recorder.finish()


def _recorder(run: _Run, hooks: Hooks) -> Recorder | None:
    """The layers' recorder (lib/runs/recorder.py), on the main process only (its dead units are counted
    over the validation pass, lib.training.engine._epoch)."""
    if not run.dist.is_main:
        return None
    every = record_every(run.per_epoch * run.config.epochs)
    updated = [p for group in run.optimizer.param_groups for p in group["params"]]  # head mode: the head alone
    return Recorder(run.model, hooks.on_layers, every=every, updated=updated)  # names as in the checkpoint


def _train_one(run: _Run, epoch: int, prepare, hooks: Hooks, on_step, stop, result: FitResult) -> None:
    """One epoch: train, validate, report, check, checkpoint."""
    data = run.data
    skip = run.begin.skip if epoch == run.begin.epoch else 0
    metrics = _epoch(run, epoch, skip, prepare=prepare, hooks=hooks, on_step=on_step, stop=stop, result=result)
    result.epochs.append(metrics)
    hooks.on_epoch(epoch, metrics)
    val_loss = metrics["val_loss"]
    check_validation_loss(val_loss, len(run.classes), epoch)  # a diverged epoch's weights are not checkpointed
    best = val_loss < result.best_val_loss
    result.best_val_loss = min(val_loss, result.best_val_loss)
    after = data.shuffle.get_state() if data.shuffle is not None else None  # = the next epoch's start
    _checkpoint(run, hooks, result, epoch=epoch, metrics=metrics, best=best, shuffle_state=after)


def _epoch(run: _Run, epoch: int, skip: int, *, prepare, hooks: Hooks, on_step, stop, result: FitResult) -> dict:
    """One epoch's training and validation passes (after `skip` batches already trained); its metrics.

    A stop writes a partial checkpoint to resume from, then goes on up.
    """
    data = run.data
    epoch_start = data.shuffle.get_state() if data.shuffle is not None else None
    loader, batches = (
        (skipping(data.train, skip), run.per_epoch - skip) if skip else (data.train, run.config.max_batches)
    )
    try:
        with result.timings("epochs"):  # training and validation passes, steps written to the hooks as they go
            stats = train_epoch(
                run.trained, loader, run.optimizer, scheduler=run.scheduler, prepare=prepare, device=run.device,
                epoch=epoch, step=run.begin.step + len(result.losses), on_step=on_step, stop=stop,
                max_batches=batches, dist=run.dist, on_metrics=hooks.on_metrics, recorder=run.recorder,
            )  # fmt: skip
            if run.recorder is not None:
                run.recorder.epoch_end(epoch)  # the epoch's last gradients, before anything else runs
            recorder = run.recorder
            dead = recorder.counting_dead_units(epoch, run.evaluated) if recorder is not None else nullcontext()
            with dead:  # dead ReLU units over the whole validation split, at no extra forward pass
                val_loss, val_accuracy = validation_pass(run.evaluated, run.device, data.val, prepare, run.dist)
    except Stopped:
        _checkpoint(run, hooks, result, epoch=epoch - 1, metrics=None, best=False, shuffle_state=epoch_start,
                    partial=True)  # fmt: skip
        raise
    return dict(
        epoch=epoch,
        train_loss=stats.train_loss,
        train_accuracy=stats.train_accuracy,
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        lr=run.optimizer.param_groups[0]["lr"],
        samples_per_sec=stats.samples / max(stats.seconds, 1e-9),
    )


def _checkpoint(
    run: _Run, hooks: Hooks, result: FitResult, *, epoch: int, metrics: dict | None, best: bool, shuffle_state,
    partial: bool = False,
) -> None:  # fmt: skip
    """Hand the hooks a checkpoint after `epoch` (partial: stopped inside the next one, resumable from here)."""
    rng = {"shuffle": shuffle_state, "augment": run.augment.get_state()}
    with result.timings("checkpoint"):
        state = make_checkpoint(
            run.model, run.optimizer, run.scheduler, config=run.config, classes=run.classes,
            mean_std=run.data.mean_std, val_samples=run.data.val_samples, epoch=epoch,
            step=run.begin.step + len(result.losses), metrics=metrics, partial=partial, rng=rng,
        )  # fmt: skip
        hooks.on_checkpoint(state, best=best)


def _recording(hooks: Hooks, losses: list[float]) -> OnStep:
    """hooks.on_step, keeping every step's loss in `losses` first."""

    def on_step(step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float) -> bool:
        losses.append(train_loss)
        return hooks.on_step(step, epoch, train_loss, lr, samples_per_sec)

    return on_step


def evaluate_checkpoint(loaded: LoadedRun, *, workers: int | None = None) -> tuple[float, float]:
    """(val_loss, val_accuracy) of a rebuilt run on its stored validation split, batched as training did:
    lib.training.loop.validation_pass, the pass `fit` records each epoch.

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
    images = decode_images([p for p, _ in samples], loaded.config.resizing(), workers=workers)
    targets = torch.tensor([t for _, t in samples])
    val = TensorBatches(images, targets, loaded.config.batch_size, shuffle=False)
    prepare = batch_preparer(loaded.device, loaded.mean_std, None)
    return validation_pass(loaded.model, loaded.device, val, prepare)

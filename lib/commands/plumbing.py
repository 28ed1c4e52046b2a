"""What the training commands need around a run (`train`, its torchrun ranks, `sweep`): the store to write,
the checks before it starts, signals and watches that stop it, hooks that record it, and its report."""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import contextmanager

from lib.charts.numbers import percent
from lib.runs.store import RunStore, StoreError
from lib.training.config import TrainConfig, config_from_args, is_model_file
from lib.training.timings import Timings
from lib.training.watch import ParentWatch, time_limit


def open_store(runs_dir: str | None) -> RunStore:
    """The run store a trainer writes to; a damaged one is healed (said on stderr).

    Raises:
        ValueError: when the folder cannot be created or written.
    """
    try:
        store = RunStore(runs_dir)
    except StoreError as e:
        raise ValueError(str(e)) from None
    if store.read_only:
        raise ValueError(f"The runs folder {store.root} is not writable; give --runs-dir a folder you can write.")
    if store.notice:
        print(f"warning: {store.notice}", file=sys.stderr)
    return store


def run_config(args, world_size: int = 1) -> TrainConfig:
    """The TrainConfig the options describe (config_from_args), with --pretrained resolved to its weights'
    name, their crop size, resize and mean/std where --image-size, --resize and --normalization are not given,
    and a model file's SHA-256: what the run records."""
    from lib.training.model_names import TORCHVISION_MODELS

    pretrained = (args.pretrained or args.weights) and args.model in TORCHVISION_MODELS
    if pretrained:
        from lib.training.models import weights_at_hand, weights_crop_size

        weights_at_hand(args.model, args.weights or "DEFAULT", download=getattr(args, "download_weights", False))
        if args.image_size is None:
            args.image_size = weights_crop_size(args.model, args.weights or "DEFAULT")
        args.normalization = args.normalization or "weights"
        args.resize = args.resize or "weights"
    config = config_from_args(args, world_size)
    if pretrained:
        from lib.training.models import with_weights_preprocessing

        config = with_weights_preprocessing(config)
    if is_model_file(config.model):
        from lib.training.model_names import with_model_file_hash

        config = with_model_file_hash(config)
    return config


def check_runnable(index, config: TrainConfig) -> None:
    """Refuse a dataset or device the run cannot use, before it starts.

    Raises:
        ValueError: naming the class with too few images, or the missing device.
    """
    few = [c for c, n in index.class_counts().items() if n == 1]
    if few:
        raise ValueError(
            f"Class {few[0]} has 1 image; each class needs at least 2 to hold one out for validation, "
            "so add images or remove the class folder."
        )
    if config.device not in ("auto", "cpu"):  # those always resolve: torch is not imported for them here
        from lib.training.device import resolve_device

        resolve_device(config.device)


@contextmanager
def stop_on_signals(stop: threading.Event):
    """While inside, SIGINT/SIGTERM set `stop`: the run ends as `stopped` after the current batch, metrics and
    checkpoint kept (under torchrun every rank stops: the flag is all-reduced)."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_watches(store: RunStore, run_id: str, stop: threading.Event, args) -> list[threading.Timer]:
    """Started timers that end the run: the per-run time limit, and the parent-process watch."""
    watches: list[threading.Timer] = []
    if args.max_minutes:
        watches.append(time_limit(store, run_id, stop, args.max_minutes))
    if args.parent_pid is not None:
        watches.append(ParentWatch(args.parent_pid, stop))
    return watches


def report(run_id: str, result, as_json: bool, timings: Timings, checkpoint: str | None) -> None:
    """The run's outcome: one JSON object, or a line plus where its checkpoint is."""
    last = result.epochs[-1] if result.epochs else {}
    summary = {
        "run_id": run_id,
        "status": result.status,
        "message": result.message,
        "epochs": len(result.epochs),
        "steps": len(result.losses),
        "last_step_loss": result.losses[-1] if result.losses else None,
        "train_loss": last.get("train_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "samples_per_sec": last.get("samples_per_sec"),
        "timings": timings.rounded(),  # seconds per phase; "total" is the whole process
        "checkpoint": checkpoint,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"run {run_id}: {result.status}. {result.message}")
        print(f"checkpoint: {checkpoint}" if checkpoint else "checkpoint: none (no epoch finished)")


def store_hooks(store: RunStore, run_id: str, as_json: bool):
    """Store hooks; for a person at a terminal (no --json) they also print one line per epoch."""
    from lib.training.trainer import StoreHooks

    class PrintingHooks(StoreHooks):
        def on_epoch(self, epoch: int, metrics: dict) -> None:
            super().on_epoch(epoch, metrics)
            print(
                f"epoch {epoch}: train loss {metrics['train_loss']:.4f}, "
                f"train accuracy {percent(metrics['train_accuracy'])}, val loss {metrics['val_loss']:.4f}, "
                f"val accuracy {percent(metrics['val_accuracy'])}, {metrics['samples_per_sec']:.0f} samples/s",
                flush=True,
            )

    return StoreHooks(store, run_id) if as_json else PrintingHooks(store, run_id)

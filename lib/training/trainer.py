"""The trainer's side of a run: engine hooks that write to the run store, and executing one run.

Imported by `python -m lib train` (the process that trains), never by pages, so a page stays light.
"""

from __future__ import annotations

import threading

from lib.runs.inside import write_rows
from lib.runs.machine import Sampler
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.training.batches import DEFAULT_CACHE_BYTES
from lib.training.checkpoint import relative_to_root
from lib.training.config import TrainConfig
from lib.training.distributed import SINGLE, Dist
from lib.training.engine import FitResult, Hooks, fit


class StoreHooks(Hooks):
    """Engine hooks that write progress and metrics to the run store and read its stop column; the
    process's load is sampled into it from the start (lib/runs/machine.py)."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.writer = store.step_writer(run_id)
        record = store.get_run(run_id)
        self.root = record.root if record is not None else ""
        self.step = 0
        self.sampler = Sampler(lambda rows: write_rows(store, run_id, "machine", rows), lambda: self.step).start()

    def on_progress(self, message: str) -> bool:
        self.store.update_run(self.run_id, message=message)
        return self.store.stop_requested(self.run_id)

    def on_start(self, total_steps: int, classes: list[str], mean_std: tuple | None) -> None:
        self.store.update_run(self.run_id, total_steps=total_steps, classes=classes, message="training")

    def on_step(self, step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float) -> bool:
        self.step = step
        return self.writer.step(step, epoch, train_loss, lr, samples_per_sec)

    def on_metrics(self, step: int, epoch: int, metrics: dict) -> None:
        for name, value in metrics.items():
            self.writer.metric(step, epoch, name, value)

    def on_layers(self, kind: str, rows: list[tuple]) -> None:
        write_rows(self.store, self.run_id, kind, rows)

    def on_epoch(self, epoch: int, metrics: dict) -> None:
        metrics = dict(metrics)
        accuracy = metrics.pop("train_accuracy", None)
        if accuracy is not None:  # an extra metric, as a logged run would name it
            self.writer.metric(self.step, epoch, "epoch/train_accuracy", accuracy)
        self.writer.flush()  # every step of the epoch is in the store before its epoch row
        self.store.record_epoch(self.run_id, **metrics)

    def on_checkpoint(self, state: dict, best: bool) -> None:
        """Save `last` (and `best` when validation loss improved), validation paths relative to the root."""
        if self.root:
            state = relative_to_root(state, self.root)
        self.store.files.save_checkpoint(self.run_id, state, "last")
        if best:
            self.store.files.save_checkpoint(self.run_id, state, "best")

    def close(self) -> None:
        """Write the steps still buffered (called before the final status); stop sampling."""
        self.sampler.stop()
        self.writer.close()


def execute_run(
    store: RunStore,
    run_id: str,
    config: TrainConfig,
    samples: list[tuple[str, int]],
    classes: list[str],
    *,
    hooks: Hooks | None = None,
    stop: threading.Event | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    decoding=None,
    start: dict | None = None,
    dist: Dist = SINGLE,
    note: str = "",
) -> FitResult:
    """Train in this process, writing to the store; checkpoints are saved by the hooks as epochs end.

    Whatever the outcome, the run keeps its newest checkpoint: a diverged or failed run keeps the one of
    its last whole epoch, a stopped run the one where it stopped. With `start` (a checkpoint) the run
    continues from it (lib/training/resume.py). `note` is added to the final message. With several processes (torchrun) only rank 0 calls this,
    and a failure is recorded with the failing rank's reason.
    """
    hooks = hooks or StoreHooks(store, run_id)
    loading = dict(cache_bytes=cache_bytes, decoding=decoding, start=start, dist=dist)
    result = fit(config, samples, classes, hooks, stop, **loading)
    if result.status == Status.FAILED:
        result.message = dist.failure_reason(result.message)
    if note:  # e.g. the marked files left out: the run's final message says so
        result.message = f"{result.message} {note}"
    hooks.close()
    last = store.files.checkpoint_path(run_id, "last")
    store.finish(run_id, result.status, result.message, str(last) if last.exists() else None)
    return result

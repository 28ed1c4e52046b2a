"""What the Train page shows for a run, computed from the store alone: progress, ETA, status in words.

The page's polling fragment calls `run_view` about once a second; tests call it directly (a
`run_every` fragment never fires under AppTest).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lib.runs.status import Status
from lib.runs.store import RunRecord, RunStore

RECENT_STEPS = 20  # samples/s is the median over this many latest steps: steady, yet follows changes


@dataclass(frozen=True)
class Progress:
    status: str
    epoch: int  # the epoch in progress (or last), 1-based; 0 before the first step
    epochs: int
    batch: int  # batches done in the current epoch
    steps_per_epoch: int | None
    step: int
    total_steps: int | None
    samples_per_sec: float | None
    eta_s: float | None  # None when unknown or the run is over

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass(frozen=True)
class RunView:
    record: RunRecord
    progress: Progress
    steps: pd.DataFrame
    epochs: pd.DataFrame


def run_view(store: RunStore, run_id: str) -> RunView | None:
    """Everything the page draws for run_id, or None when the store has no such run."""
    record = store.get_run(run_id)
    if record is None:
        return None
    steps, epochs = store.steps(run_id), store.epochs(run_id)
    return RunView(record, run_progress(record, steps), steps, epochs)


def run_progress(record: RunRecord, steps: pd.DataFrame) -> Progress:
    """Epoch, batch, samples/s and ETA from the step metrics; the ETA is remaining batches at the recent rate."""
    epochs = int(record.config.get("epochs", 0))
    total = record.total_steps
    per_epoch = total // epochs if total and epochs else None
    if steps.empty:
        return Progress(record.status, 0, epochs, 0, per_epoch, 0, total, None, None)
    step, epoch = int(steps["step"].iloc[-1]), int(steps["epoch"].iloc[-1])
    sps = float(steps["samples_per_sec"].iloc[-RECENT_STEPS:].median())
    batch = step - (epoch - 1) * per_epoch if per_epoch else step
    eta = None
    if record.status == Status.RUNNING and total and sps > 0:
        eta = (total - step) * int(record.config.get("batch_size", 1)) / sps
    return Progress(record.status, epoch, epochs, batch, per_epoch, step, total, sps, eta)


def status_sentence(record: RunRecord) -> str:
    """The run's state in words, saying why for diverged, failed and interrupted runs."""
    final = record.final
    accuracy = f" Validation accuracy {final['val_accuracy']:.1%}." if final.get("val_accuracy") is not None else ""
    words = {
        Status.RUNNING: f"Training. {record.message}" if record.message not in ("", "training") else "Training.",
        Status.COMPLETED: f"Completed.{accuracy}",
        Status.STOPPED: f"Stopped on request; the metrics so far are kept.{accuracy}",
        Status.DIVERGED: f"Diverged: {record.message}",
        Status.FAILED: f"Failed: {record.message}",
        Status.INTERRUPTED: f"Interrupted: {record.message}",
    }
    return words.get(record.status, record.message)


def format_duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s', or '-' when unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def run_label(record: RunRecord) -> str:
    """How a run reads in the runs picker. No status: a keyed selectbox keeps the label it first showed."""
    model = record.config.get("model", "?")
    name = record.name if record.name != record.id else record.id
    return f"{name} · {model}"


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run for the runs table: name, model, status, final metrics."""
    rows = [
        {
            "run": r.name or r.id,
            "model": r.config.get("model", "?"),
            "status": r.status,
            "val accuracy": r.final.get("val_accuracy"),
            "val loss": r.final.get("val_loss"),
            "started": pd.Timestamp(r.created, unit="s"),
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=["run", "model", "status", "val accuracy", "val loss", "started"])

"""What the Train page shows for a run, computed from the store alone: progress, ETA, status in words.

The page's polling fragment calls `run_view` about once a second; tests call it directly (a
`run_every` fragment never fires under AppTest).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lib.charts.numbers import percent
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
    epochs = _count(record.config.get("epochs"), 0)
    total = record.total_steps
    per_epoch = total // epochs if total and epochs else None
    if steps.empty:
        return Progress(record.status, 0, epochs, 0, per_epoch, 0, total, None, None)
    step, epoch = int(steps["step"].iloc[-1]), int(steps["epoch"].iloc[-1])
    sps = float(steps["samples_per_sec"].iloc[-RECENT_STEPS:].median())
    sps = None if sps != sps else sps  # NaN: a logged run that did not record samples/s
    batch = step - (epoch - 1) * per_epoch if per_epoch else step
    eta = None
    if record.status == Status.RUNNING and total and sps is not None and sps > 0:
        eta = (total - step) * _count(record.config.get("batch_size"), 1) / sps
    return Progress(record.status, epoch, epochs, batch, per_epoch, step, total, sps, eta)


def _count(value: object, default: int) -> int:
    """A stored config's whole number, or default for anything else (an old import's "lots")."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def status_sentence(record: RunRecord) -> str:
    """The run's state in words, saying why for diverged, failed and interrupted runs."""
    final = record.final
    accuracy = (
        f" Validation accuracy {percent(final['val_accuracy'])}." if final.get("val_accuracy") is not None else ""
    )
    if "Left out " in (record.message or ""):  # files marked on the Health page: say what the run trained on
        accuracy += " Left out " + record.message.split("Left out ", 1)[1]
    words = {
        Status.RUNNING: f"Training. {record.message}" if record.message not in ("", "training") else "Training.",
        Status.COMPLETED: f"Completed.{accuracy}",
        Status.STOPPED: (  # the time limit's stop says so (lib/training/watch.py)
            record.message
            if record.message.startswith("Stopped after")
            else "Stopped on request; the metrics so far are kept."
        )
        + accuracy,
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


def run_label(record: RunRecord, name: str | None = None) -> str:
    """How a run reads in the runs picker: name (`name`, else the run's), model, dataset folder, start time.

    No status: a keyed selectbox keeps the label it first showed."""
    model = record.config.get("model", "?")
    started = time.strftime("%d %b %H:%M", time.localtime(record.created))
    return f"{name or record.name} · {model} · {dataset_name(record.root)} · {started}"


def run_labels(records: list[RunRecord]) -> dict[str, str]:
    """{run id: picker label} of the runs one picker offers, their names told apart (distinct_names)."""
    names = distinct_names([r.id for r in records], [r.name for r in records])
    return {r.id: run_label(r, names[r.id]) for r in records}


def distinct_names(ids: list[str], names: list[str]) -> dict[str, str]:
    """{run id: name}, with the short id (the id's last 6 characters) added where runs share a name: an
    imported copy, or two runs named alike, read 'cnn (3f9a1c)' and 'cnn (07b2e4)' wherever runs are listed."""
    counts = Counter(names)
    return {i: n if counts[n] == 1 else f"{n} ({i[-6:]})" for i, n in zip(ids, names, strict=True)}


def dataset_name(root: str) -> str:
    """The dataset's folder name (an extracted upload's hash prefix dropped), or '?' when unknown."""
    if not root:
        return "?"
    name = Path(root).name
    return name.split("-", 1)[1] if re.fullmatch(r"[0-9a-f]{12,16}-.+", name) else name


def run_duration(record: RunRecord, now: float | None = None) -> float | None:
    """Seconds from start to end (to now while running)."""
    end = record.ended if record.ended is not None else (now or time.time()) if record.status == "running" else None
    return None if end is None else max(0.0, end - record.created)


RUN_COLUMNS = [
    "run", "dataset", "model", "status", "val accuracy", "val loss", "epochs", "batch", "lr", "optimizer",
    "schedule", "size", "augment", "duration", "started",
]  # fmt: skip


def runs_table(runs: list[RunRecord]) -> pd.DataFrame:
    """One row per run: name (told apart: distinct_names), dataset, model, status, final metrics (accuracy
    a share 0..1), hyperparameters, duration."""
    rows, names = [], distinct_names([r.id for r in runs], [r.name or r.id for r in runs])
    for r in runs:
        c, acc = r.config, r.final.get("val_accuracy")
        rows.append(
            {
                "run": names[r.id],
                "dataset": dataset_name(r.root),
                "model": c.get("model", "?"),
                "status": str(r.status),
                "val accuracy": acc,  # a share 0..1: the app shows it with percent_column
                "val loss": r.final.get("val_loss"),
                "epochs": c.get("epochs"),
                "batch": c.get("batch_size"),
                "lr": c.get("lr"),
                "optimizer": c.get("optimizer"),
                "schedule": c.get("schedule"),
                "size": c.get("image_size"),
                "augment": c.get("augment"),
                "duration": format_duration(run_duration(r)),
                "started": pd.Timestamp(r.created, unit="s"),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def with_parent_history(store: RunStore, view: RunView, max_depth: int = 50) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(steps, epochs, first own step) for a continued run's charts: its ancestors' steps and epochs
    before the point it continued from, then its own, so the curves read as one run. first own step is
    the run's first step (1 for a run without a parent)."""
    steps, epochs = view.steps, view.epochs
    first = int(steps["step"].iloc[0]) if len(steps) else 1
    record, depth = view.record, 0
    while record.parent and depth < max_depth:
        parent = store.get_run(record.parent)
        if parent is None:
            break
        start_step = int(steps["step"].iloc[0]) if len(steps) else None
        start_epoch = int(epochs["epoch"].iloc[0]) if len(epochs) else None
        before = store.steps(parent.id)
        before = before[before["step"] < start_step] if start_step is not None else before
        old = store.epochs(parent.id)
        old = old[old["epoch"] < start_epoch] if start_epoch is not None else old
        steps, epochs = pd.concat([before, steps], ignore_index=True), pd.concat([old, epochs], ignore_index=True)
        record, depth = parent, depth + 1
    return steps, epochs, first

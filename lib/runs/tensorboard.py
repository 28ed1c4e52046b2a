"""TensorBoard event files into and out of the run store (`import-tb`, `export --format tensorboard`).

Reading uses TensorBoard's own `EventAccumulator`; writing uses `torch.utils.tensorboard`, so both
sides speak the format TensorBoard itself reads. tensorboard is imported inside these functions only:
the app and the other commands never load it.

Import: every folder under LOGDIR that holds `events.out.tfevents.*` files is one run, named after the
folder (its path below LOGDIR). Tags become columns by lib/runs/tags.py; the values are the float32
TensorBoard stored. Validation values become epoch rows: epoch k is the k-th distinct step that carries
a validation tag; a step's epoch is 1 + the validation steps before it. Every other scalar tag is an
extra metric. The run's id is made from its folder's events (first wall time and a hash of the folder
name and files), so importing the same folder twice finds the id taken: refused, or a new id with
rename, as bundles are (the copy named "NAME (2)").
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from lib.runs.importer import _new_ids, mark_copies
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.runs.tags import EPOCH_ONLY, EPOCH_TAG, STEP_TAG, column_for, epoch_column_for

EVENT_FILES = "events.out.tfevents.*"
IMPORTED = "Imported from TensorBoard event files ({folder})."


@dataclass
class TbRun:
    """One folder's scalars: {tag: {step: value}} (the last value logged at a step wins), wall times."""

    name: str
    folder: Path
    scalars: dict[str, dict[int, float]]
    first: float
    last: float
    hparams: dict

    def run_id(self) -> str:
        """Deterministic: the same folder of events gets the same id (so a second import clashes)."""
        files = sorted(p.name for p in self.folder.glob(EVENT_FILES))
        digest = hashlib.sha1(json.dumps([self.name, files, self.first]).encode()).hexdigest()[:6]
        return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.first))}-{digest}"


def read_logdir(logdir: str | Path) -> list[TbRun]:
    """Every folder under logdir holding event files, read with TensorBoard's EventAccumulator.

    Raises:
        ValueError: when logdir is not a folder or holds no event file with a scalar.
    """
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise ValueError(f"{logdir} is not a folder; give the folder TensorBoard was pointed at (its --logdir).")
    folders = sorted({p.parent for p in logdir.rglob(EVENT_FILES) if p.is_file()})
    runs = [r for r in (_read_folder(f, logdir) for f in folders) if r.scalars]
    if not runs:
        raise ValueError(f"No TensorBoard event file with a scalar under {logdir}; check the folder.")
    return runs


def _read_folder(folder: Path, logdir: Path) -> TbRun:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars, times = {}, []
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        scalars[tag] = {int(e.step): float(e.value) for e in events}
        times += [events[0].wall_time, events[-1].wall_time] if events else []
    for tag in acc.Tags().get("tensors", []):  # tf.summary.scalar (TF2) and new_style scalars
        events = [e for e in acc.Tensors(tag) if _scalar(e.tensor_proto) is not None]
        if events and tag not in scalars:
            scalars[tag] = {int(e.step): _scalar(e.tensor_proto) for e in events}
            times += [events[0].wall_time, events[-1].wall_time]
    name = folder.relative_to(logdir).as_posix() if folder != logdir else logdir.resolve().name
    first, last = min(times, default=time.time()), max(times, default=time.time())
    return TbRun(name, folder, scalars, first, last, _hparams(acc))


def _hparams(acc) -> dict:
    """The hyperparameters `add_hparams` wrote into this folder ({} when none): numbers, text, booleans."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    try:
        content = acc.PluginTagToContent("hparams").get("_hparams_/session_start_info")
    except KeyError:  # no hparams plugin data in this folder
        return {}
    if content is None:
        return {}
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items() if v.WhichOneof("kind") != "null_value"}


def _scalar(proto) -> float | None:
    """A tensor event's value when it is one number, else None (histograms, text)."""
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(proto)
    return float(array.reshape(())) if array.size == 1 and array.dtype.kind in "fiu" else None


def store_rows(run: TbRun, run_id: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(steps, epochs, metrics) rows of the store's tables, run id first, for one folder's scalars."""
    val_steps = sorted({s for tag, values in run.scalars.items() if column_for(tag) in EPOCH_ONLY for s in values})
    epoch_of = {s: k for k, s in enumerate(val_steps, 1)}
    steps: dict[int, dict] = {}
    epochs: dict[int, dict] = {k: {} for k in epoch_of.values()}
    metrics = []
    for tag, values in run.scalars.items():
        column, epoch_column = column_for(tag), epoch_column_for(tag)
        for step, value in values.items():
            if column in EPOCH_ONLY or (epoch_column and step in epoch_of):
                epochs[epoch_of[step]][column if column in EPOCH_ONLY else epoch_column] = value
            elif column is not None:
                steps.setdefault(step, {})[column] = value
            else:
                metrics.append((run_id, step, bisect.bisect_left(val_steps, step) + 1, tag, value))
    step_rows = [
        (run_id, s, bisect.bisect_left(val_steps, s) + 1, *(r.get(c) for c in ("train_loss", "lr", "samples_per_sec")))
        for s, r in sorted(steps.items())
    ]
    columns = ("train_loss", "val_loss", "val_accuracy", "lr", "samples_per_sec")
    epoch_rows = [(run_id, k, *(r.get(c) for c in columns)) for k, r in sorted(epochs.items())]
    return step_rows, epoch_rows, metrics


def import_logdir(
    logdir: str | Path, store: RunStore, *, rename: bool = False, owner: str | None = None
) -> dict[str, str]:
    """Add every event-file folder under logdir to the store as a run, in one transaction.

    Returns:
        {run name: run id in the store}.

    Raises:
        ValueError: one sentence (not a folder, no scalars, or a run already imported without rename).
    """
    runs = read_logdir(logdir)
    ids = _new_ids(store, [r.run_id() for r in runs], rename, Path(logdir).name)
    rows, steps, epochs, metrics = [], [], [], []
    for run in runs:
        run_id = ids[run.run_id()]
        rows.append(_run_row(run, run_id, owner))
        s, e, m = store_rows(run, run_id)
        steps, epochs, metrics = steps + s, epochs + e, metrics + m
    mark_copies(store, rows, {new for old, new in ids.items() if new != old})  # "run (2)" beside "run"
    store.insert_runs(rows, steps, epochs, {}, metrics)
    return {run.name: ids[run.run_id()] for run in runs}


def _run_row(run: TbRun, run_id: str, owner: str | None) -> dict:
    """The runs-table row of an imported folder: finished (completed), no live trainer claimed."""
    config = {**run.hparams, "source": "tensorboard", "logdir": run.name}
    return {
        "id": run_id, "name": run.name, "created": run.first, "ended": run.last, "heartbeat": run.last,
        "config": json.dumps(config), "fingerprint": "", "root": "", "classes": "[]",
        "status": str(Status.COMPLETED), "message": IMPORTED.format(folder=run.name), "owner": owner,
        "host": socket.gethostname(), "stop_requested": 0,
    }  # fmt: skip


def write_event_files(store: RunStore, run_ids: list[str], out: str | Path) -> list[Path]:
    """Write each run's metrics as TensorBoard event files in out/<run name> (the id when names clash).

    Step columns go under STEP_TAG's tags at their step; an epoch's validation under `val/loss` and
    `val/accuracy` at the epoch's last step (its number when it has no step); extra metrics under their
    own name. Returns the folders written.
    """
    from torch.utils.tensorboard import SummaryWriter

    out, folders = Path(out), []
    records = [store.get_run(r) for r in run_ids]
    names = [_folder_name(r.name) or r.id for r in records]
    for record, name in zip(records, names):
        folder = out / (name if names.count(name) == 1 else record.id)
        with SummaryWriter(log_dir=str(folder)) as writer:
            for tag, step, value in _scalars_of(store, record.id):
                writer.add_scalar(tag, value, step)
        folders.append(folder)
    return folders


def _scalars_of(store: RunStore, run_id: str):
    """(tag, step, value) of every value a run stored (NULLs skipped)."""
    steps, epochs = store.steps(run_id), store.epochs(run_id)
    last = steps.groupby("epoch")["step"].max() if len(steps) else {}
    for column, tag in STEP_TAG.items():
        if column in steps:
            for step, value in zip(steps["step"], steps[column]):
                if value == value:
                    yield tag, int(step), float(value)
    for e in epochs.itertuples(index=False):
        step = int(last[e.epoch]) if e.epoch in last else int(e.epoch)
        for column, tag in EPOCH_TAG.items():
            value = getattr(e, column)
            if value == value and value is not None:
                yield tag, step, float(value)
    for m in store.metrics(run_id).itertuples(index=False):
        if m.value == m.value:
            yield m.name, int(m.step), float(m.value)


def _folder_name(name: str) -> str:
    """A run name as a safe folder name ('' when nothing is left)."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._")[:80]

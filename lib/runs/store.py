"""The run store: every run's config, status and metrics, and every sweep, in SQLite; a run's checkpoints
and predictions are files beside it (lib/runs/files.py), reached through `RunStore.files`.

Trainers (a subprocess started by the app, or `python -m lib train` on any machine sharing the folder)
write; pages read. Each call opens its own short-lived connection (a trainer's step metrics go through
one StepWriter), the database is in WAL mode (readers never block the writer) and every write is one
short transaction, so a trainer killed with SIGKILL leaves the database consistent. A run still marked
`running` whose process is gone (same host) or whose heartbeat is stale (another host, see
lib/runs/liveness.py) reads back as `interrupted`. Stop is a column the trainer reads with each flush of
steps, so it works across processes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lib.runs.files import RunFiles
from lib.runs.liveness import trainer_alive
from lib.runs.status import FINAL_STATUSES, Status
from lib.settings import runs_dir

if TYPE_CHECKING:
    import pandas as pd

NOTICE_S = 600.0  # how long pages show that the store healed
INTERRUPTED_MESSAGE = (
    "The trainer ended without finishing (its process was killed or crashed); metrics up to then are kept."
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, created REAL, config TEXT, fingerprint TEXT, root TEXT, classes TEXT,
    status TEXT, message TEXT, owner TEXT, pid INTEGER, host TEXT, heartbeat REAL, ended REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0, total_steps INTEGER, checkpoint TEXT);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT, step INTEGER, epoch INTEGER, train_loss REAL, lr REAL, samples_per_sec REAL,
    PRIMARY KEY (run_id, step));
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT, epoch INTEGER, train_loss REAL, val_loss REAL, val_accuracy REAL, lr REAL, samples_per_sec REAL,
    PRIMARY KEY (run_id, epoch));
CREATE TABLE IF NOT EXISTS notes (run_id TEXT PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, created REAL, owner TEXT, root TEXT, base TEXT, axes TEXT, total INTEGER,
    pid INTEGER, host TEXT, heartbeat REAL, status TEXT, message TEXT, stop_requested INTEGER NOT NULL DEFAULT 0,
    ended REAL);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, step INTEGER, epoch INTEGER, name TEXT, value REAL, PRIMARY KEY (run_id, step, name));
CREATE TABLE IF NOT EXISTS layer_norms (
    run_id TEXT, step INTEGER, epoch INTEGER, name TEXT, weight_norm REAL, grad_norm REAL, update_ratio REAL,
    PRIMARY KEY (run_id, step, name));
CREATE TABLE IF NOT EXISTS layer_histograms (
    run_id TEXT, epoch INTEGER, name TEXT, which TEXT, edges TEXT, counts TEXT,
    PRIMARY KEY (run_id, epoch, name, which));
CREATE TABLE IF NOT EXISTS dead_units (
    run_id TEXT, epoch INTEGER, name TEXT, fraction REAL, units INTEGER, PRIMARY KEY (run_id, epoch, name));
CREATE TABLE IF NOT EXISTS machine (
    run_id TEXT, time REAL, step INTEGER, cpu_percent REAL, rss_mb REAL, gpu_percent REAL, gpu_mem_mb REAL,
    PRIMARY KEY (run_id, time));
"""
# metrics: the extra metrics of a logged or imported run (any name the logger was given), one row per value;
# the engine's training accuracy is one too (train_accuracy per step, epoch/train_accuracy per epoch).
# layer_norms, layer_histograms, dead_units, machine: what a run's layers and process did (lib/runs/inside.py).
# Columns added after the first release: an older store gets them on opening (guarded ALTER TABLE).
# visitor: who started a run; parent: the run a continued run resumed from; sweep: the sweep grouping it.
# sweeps.visitor: who started the sweep (its runs carry it, so they count against that visitor's cap).
_ADDED_COLUMNS = {"runs": {"visitor": "TEXT", "parent": "TEXT", "sweep": "TEXT"}, "sweeps": {"visitor": "TEXT"}}
INSIDE_TABLES = ("layer_norms", "layer_histograms", "dead_units", "machine")
STEP_COLUMNS = ["step", "epoch", "train_loss", "lr", "samples_per_sec"]
EPOCH_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "samples_per_sec"]
METRIC_COLUMNS = ["step", "epoch", "name", "value"]


log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The run store cannot be read or written; the message is one sentence saying what to do."""


def heals(method):
    """Run a store method, or a function whose first argument is the store (lib/runs/sweeps.py); when the
    database lost its tables or is not a database, heal it once and retry.

    Any sqlite error left (a read-only folder, a full disk) becomes a one-sentence StoreError.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            if not self._heal(e):
                raise StoreError(self._sentence(e)) from None
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise StoreError(self._sentence(e)) from None

    return wrapper


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table, with config and classes parsed and the latest epoch's metrics."""

    id: str
    name: str
    created: float
    config: dict
    fingerprint: str
    root: str
    classes: list[str]
    status: str
    message: str
    owner: str | None
    pid: int | None
    host: str
    heartbeat: float | None
    ended: float | None
    stop_requested: bool
    total_steps: int | None
    checkpoint: str | None
    final: dict  # latest epoch row (EPOCH_COLUMNS) or {}
    parent: str | None = None  # the run this one continued (`train --resume`), else None
    sweep: str | None = None  # the sweep this run belongs to, else None

    def summary(self) -> dict:
        """The JSON shape of `python -m lib runs --json` (one run)."""
        return {
            "run_id": self.id,
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "created": self.created,
            "owner": self.owner,
            "config": self.config,
            "parent": self.parent,
            "sweep": self.sweep,
            **self.final,
        }


class RunStore:
    """The runs folder: `runs.sqlite` plus `checkpoints/<run_id>/` (last.pt, best.pt, the predictions of each)."""

    def __init__(self, root: str | Path | None = None, *, read_only: bool | None = None):
        """Open (or create) the store at root; see `notice` for anything healed on the way.

        A folder this process cannot write is opened read-only (pages can still list runs); a
        database that is not one is moved aside and a fresh one started.

        Raises:
            StoreError: when the folder can neither be created nor read.
        """
        self.root = Path(root) if root else runs_dir()
        self.path = self.root / "runs.sqlite"
        self.files = RunFiles(self.root)
        self.notice = ""  # one sentence about a store that was healed on opening, for the page to show
        self.noticed_at = 0.0  # when (pages show the notice for NOTICE_S only: it is the server's, not a visitor's)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if not self.root.is_dir():
                raise StoreError(
                    f"The runs folder cannot be created ({e.strerror}); choose a writable folder."
                ) from None
        self.read_only = _read_only(self.root, self.path) if read_only is None else read_only
        if not self.read_only:
            self._create()

    @heals
    def _create(self) -> None:
        with self.transaction() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: set once, readers never block the writer
            con.executescript(_SCHEMA)
            _add_columns(con)

    def _heal(self, error: sqlite3.DatabaseError) -> bool:
        """Repair what can be repaired in place: missing tables, or a file that is not a database.

        Returns whether anything was repaired (so the call is worth retrying).
        """
        text = str(error).lower()
        if self.read_only:
            return False
        if "no such table" in text or "no such column" in text:
            self._create()
            return True
        if "not a database" in text or "malformed" in text:
            aside = self.path.with_name(f"runs.sqlite.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    os.replace(src, f"{aside}{suffix}")
            self.notice = (
                f"The run store was damaged; it was moved aside as {aside.name} in the runs folder "
                "and a new, empty one started."
            )
            self.noticed_at = time.time()
            self._reclaim_checkpoints()
            log.warning("run store %s was damaged (%s); moved to %s", self.path, error, aside)
            self._create()
            return True
        return False

    def _reclaim_checkpoints(self) -> None:
        """Delete the checkpoint folders of the runs a damaged store held: no run names them any more, and
        they would hold the disk quota for good (the damaged file itself is kept aside)."""
        folder = self.root / "checkpoints"
        if folder.is_dir():
            doomed = self.root / f".checkpoints-orphaned-{secrets.token_hex(4)}"
            os.replace(folder, doomed)  # at once: a run created from now on starts a new folder
            shutil.rmtree(doomed, ignore_errors=True)

    def recent_notice(self, now: float | None = None) -> str:
        """The healing notice while it is news (NOTICE_S), else "": a shared store's notice would otherwise be
        shown to every visitor for the life of the server."""
        return self.notice if (now or time.time()) - self.noticed_at < NOTICE_S else ""

    def _sentence(self, error: sqlite3.DatabaseError) -> str:
        """One sentence for an error the store could not heal."""
        if self.read_only or "readonly" in str(error).lower():
            return "The runs folder is read-only: runs can be viewed but not started or changed; make it writable."
        return f"The run store cannot be used ({error}); check the runs folder's disk and permissions."

    def connect(self) -> sqlite3.Connection:
        if self.read_only:
            if not self.path.exists():
                raise sqlite3.OperationalError("no such table: runs")  # nothing stored yet: reads see no runs
            try:
                con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
                con.execute("SELECT 1 FROM runs LIMIT 1")
            except sqlite3.OperationalError:  # WAL needs a -shm file it cannot create here: read the file as is
                con = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True)
            con.row_factory = sqlite3.Row
            return con
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after a crash, no fsync per step
        return con

    @contextmanager
    def transaction(self):
        """One short-lived connection and one transaction on it; wrap its caller in `heals`."""
        con = self.connect()
        try:
            with con:  # one transaction: commit on success, roll back on error
                yield con
        finally:
            con.close()

    # --- writes (trainer) -------------------------------------------------------------------------

    @heals
    def create_run(
        self,
        config: dict,
        *,
        root: str = "",
        fingerprint: str = "",
        classes: list[str] | None = None,
        owner: str | None = None,
        pid: int | None = None,
        name: str = "",
        visitor: str | None = None,
        parent: str | None = None,
        sweep: str | None = None,
    ) -> str:
        """Add a run with status `running` and return its id (sortable by time).

        owner is the browser session (deployed mode shows a session only its own runs); visitor is
        who started it as far as the server can tell (runs per visitor are capped across their tabs);
        parent is the run it continues, sweep the sweep it belongs to.
        """
        run_id = new_run_id()
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO runs (id, name, created, config, fingerprint, root, classes, status, message, owner,"
                " pid, host, heartbeat, visitor, parent, sweep) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    name or run_id,
                    now,
                    json.dumps(config),
                    fingerprint,
                    str(root),
                    json.dumps(classes or []),
                    Status.RUNNING,
                    owner,
                    pid,
                    socket.gethostname(),
                    now,
                    visitor,
                    parent,
                    sweep,
                ),
            )
        return run_id

    @heals
    def update_run(self, run_id: str, **values) -> None:
        """Set columns of a run (pid, message, total_steps, fingerprint, classes, config) and beat its heartbeat."""
        allowed = {"pid", "message", "total_steps", "fingerprint", "classes", "root", "host", "config"}
        if not set(values) <= allowed:
            raise ValueError(f"Cannot update {sorted(set(values) - allowed)}; only {sorted(allowed)}.")
        for key in ("classes", "config"):
            if key in values:
                values[key] = json.dumps(values[key])
        values["heartbeat"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as con:
            con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*values.values(), run_id))

    @heals
    def record_step(
        self, run_id: str, step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float
    ) -> bool:
        """Append one step's metrics, beat the heartbeat, and return whether a stop was requested."""
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step, epoch, train_loss, lr, samples_per_sec),
            )
            con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))
            row = con.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def step_writer(self, run_id: str, flush_s: float = 0.2) -> StepWriter:
        """A buffered writer for a trainer's step metrics (see StepWriter)."""
        return StepWriter(self, run_id, flush_s)

    @heals
    def record_epoch(
        self,
        run_id: str,
        epoch: int,
        train_loss: float,
        val_loss: float,
        val_accuracy: float,
        lr: float,
        samples_per_sec: float,
    ) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, epoch, train_loss, val_loss, val_accuracy, lr, samples_per_sec),
            )
            con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    @heals
    def finish(self, run_id: str, status: str, message: str = "", checkpoint: str | None = None) -> None:
        """Set a final status (and the checkpoint's path, if one was saved)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"Unknown final status {status!r}; use one of {', '.join(FINAL_STATUSES)}.")
        with self.transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, message = ?, checkpoint = ?, ended = ?, heartbeat = ? WHERE id = ?",
                (status, message, checkpoint, time.time(), time.time(), run_id),
            )

    @heals
    def request_stop(self, run_id: str) -> None:
        """Ask the run's trainer, in whatever process, to stop after its current batch."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))

    @heals
    def write_logged(self, run_id: str, steps: list[tuple], epochs: list[tuple], metrics: list[tuple]) -> bool:
        """Write a logger's buffered rows and beat the heartbeat in one transaction; return whether a stop
        was requested. Rows are run id first, then STEP_COLUMNS / EPOCH_COLUMNS / METRIC_COLUMNS; a None
        value does not overwrite a value already stored for the same step or epoch (two calls may fill
        one row)."""
        with self.transaction() as con:
            con.executemany(_upsert("steps", STEP_COLUMNS), steps)
            con.executemany(_upsert("epochs", EPOCH_COLUMNS), epochs)
            con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", metrics)
            con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))
            row = con.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    @heals
    def stop_requested(self, run_id: str) -> bool:
        with self.transaction() as con:
            row = con.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    @heals
    def delete_owner_runs(self, owner: str) -> int:
        """Remove an owner's finished runs with their metrics and checkpoints; ask running ones to stop.

        Returns how many runs were deleted (a stopped run goes on the next sweep).
        """
        runs = self.list_runs(owner)
        for r in runs:
            if r.status == Status.RUNNING:
                self.request_stop(r.id)
        done = [r.id for r in runs if r.status != Status.RUNNING]
        self.delete_runs(done)
        return len(done)

    @heals
    def delete_runs(self, run_ids: list[str]) -> None:
        """Remove runs with their metrics, notes and checkpoint folders (the caller checks none is running)."""
        with self.transaction() as con:
            for run_id in run_ids:
                for table, column in (
                    ("steps", "run_id"), ("epochs", "run_id"), ("metrics", "run_id"), ("notes", "run_id"),
                    *((t, "run_id") for t in INSIDE_TABLES), ("runs", "id"),
                ):  # fmt: skip
                    con.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
        for run_id in run_ids:
            self.files.delete(run_id)

    @heals
    def rename_run(self, run_id: str, name: str) -> None:
        """Give a run a new display name (its id never changes); an empty name shows the id."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET name = ? WHERE id = ?", (name.strip() or run_id, run_id))

    @heals
    def set_note(self, run_id: str, note: str) -> None:
        """Keep a free-text note with a run (an empty note removes it)."""
        with self.transaction() as con:
            con.execute("DELETE FROM notes WHERE run_id = ?", (run_id,))
            if note.strip():
                con.execute("INSERT INTO notes VALUES (?, ?)", (run_id, note))

    @heals
    def insert_runs(
        self,
        runs: list[dict],
        steps: list[tuple],
        epochs: list[tuple],
        notes: dict[str, str],
        metrics: list[tuple] = (),
    ) -> None:
        """Add whole runs as they were (an import) in one transaction: all of them, or none.

        Args:
            runs: rows of the runs table as {column: value}; columns this store lacks are dropped.
            steps, epochs, metrics: rows in table order, run id first (STEP_COLUMNS / EPOCH_COLUMNS /
                METRIC_COLUMNS after it).
            notes: {run_id: note}.

        Raises:
            ValueError: when a run id is already in the store (nothing is written).
        """
        with self.transaction() as con:
            known = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
            for row in runs:
                if con.execute("SELECT 1 FROM runs WHERE id = ?", (row["id"],)).fetchone():
                    raise ValueError(f"Run {row['id']} is already in {self.root}; import with --rename to add a copy.")
                cols = [c for c in row if c in known]
                con.execute(
                    f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [row[c] for c in cols],
                )
            con.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?)", steps)
            con.executemany("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?)", epochs)
            con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", metrics)
            con.executemany("INSERT INTO notes VALUES (?, ?)", [(k, v) for k, v in notes.items() if v.strip()])

    # --- reads (pages, CLI) -----------------------------------------------------------------------

    @heals
    def run_row(self, run_id: str) -> dict | None:
        """A run's row of the runs table as stored ({column: value}), for export."""
        with self.transaction() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self._select("WHERE r.id = ?", (run_id,))
        return runs[0] if runs else None

    def list_runs(self, owner: str | None = None) -> list[RunRecord]:
        """Every run, newest first; only `owner`'s when given (deployed mode)."""
        if owner is None:
            return self._select("", ())
        return self._select("WHERE r.owner = ?", (owner,))

    def running_of_visitor(self, visitor: str) -> list[RunRecord]:
        """The runs training now that were started by visitor, from any of their tabs."""
        return [r for r in self._select("WHERE r.visitor = ?", (visitor,)) if r.status == Status.RUNNING]

    def running(self, owner: str | None = None) -> list[RunRecord]:
        return [r for r in self.list_runs(owner) if r.status == Status.RUNNING]

    @heals
    def steps(self, run_id: str, since_step: int = -1) -> pd.DataFrame:
        """Step metrics (STEP_COLUMNS) after since_step, in order."""
        import pandas as pd  # here, not at the top: a trainer that never reads a frame starts faster

        if self.read_only and not self.path.exists():
            return pd.DataFrame(columns=STEP_COLUMNS, dtype="float64")
        with self.transaction() as con:
            rows = con.execute(
                f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id = ? AND step > ? ORDER BY step",
                (run_id, since_step),
            ).fetchall()
        return pd.DataFrame([tuple(r) for r in rows], columns=STEP_COLUMNS, dtype="float64")

    @heals
    def epochs(self, run_id: str) -> pd.DataFrame:
        import pandas as pd

        if self.read_only and not self.path.exists():
            return pd.DataFrame(columns=EPOCH_COLUMNS, dtype="float64")
        with self.transaction() as con:
            rows = con.execute(
                f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            ).fetchall()
        return pd.DataFrame([tuple(r) for r in rows], columns=EPOCH_COLUMNS, dtype="float64")

    @heals
    def metrics(self, run_id: str) -> pd.DataFrame:
        """A run's extra metrics (METRIC_COLUMNS: step, epoch, name, value), by name then step."""
        import pandas as pd

        if self.read_only and not self.path.exists():
            return pd.DataFrame(columns=METRIC_COLUMNS)
        with self.transaction() as con:
            rows = con.execute(
                "SELECT step, epoch, name, value FROM metrics WHERE run_id = ? ORDER BY name, step", (run_id,)
            ).fetchall()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=METRIC_COLUMNS)
        return frame.astype({"step": "float64", "epoch": "float64", "value": "float64"})

    @heals
    def aggregates(self, run_ids: list[str] | None = None) -> dict[str, dict]:
        """Per-run figures computed in SQL, so a table of many runs never loads their steps.

        Returns:
            {run_id: {best_val_accuracy, best_val_loss, epochs_done, samples_per_sec (mean over epochs),
            last_step, note}}; runs without epochs have None figures.
        """
        if self.read_only and not self.path.exists():
            return {}
        where = f"WHERE r.id IN ({', '.join('?' * len(run_ids))})" if run_ids is not None else ""
        with self.transaction() as con:
            rows = con.execute(
                "SELECT r.id, MAX(e.val_accuracy) AS best_val_accuracy, MIN(e.val_loss) AS best_val_loss,"
                " COUNT(e.epoch) AS epochs_done, AVG(e.samples_per_sec) AS samples_per_sec,"
                " (SELECT MAX(step) FROM steps s WHERE s.run_id = r.id) AS last_step,"
                " (SELECT note FROM notes n WHERE n.run_id = r.id) AS note"
                f" FROM runs r LEFT JOIN epochs e ON e.run_id = r.id {where} GROUP BY r.id",
                tuple(run_ids or ()),
            ).fetchall()
        return {row["id"]: {k: row[k] for k in row.keys() if k != "id"} for row in rows}

    @heals
    def _select(self, where: str, params: tuple) -> list[RunRecord]:
        if self.read_only and not self.path.exists():
            return []
        with self.transaction() as con:
            if not self.read_only:
                self._mark_interrupted(con)
            rows = con.execute(
                "SELECT r.*, e.epoch AS f_epoch, e.train_loss AS f_train_loss, e.val_loss AS f_val_loss,"
                " e.val_accuracy AS f_val_accuracy, e.lr AS f_lr, e.samples_per_sec AS f_samples_per_sec"
                " FROM runs r LEFT JOIN epochs e ON e.run_id = r.id"
                " AND e.epoch = (SELECT MAX(epoch) FROM epochs WHERE run_id = r.id)"
                f" {where} ORDER BY r.created DESC",
                params,
            ).fetchall()
        # Read-only: a dead trainer's run reads as interrupted without being written.
        return [_interrupted_if_dead(_record(row)) for row in rows]

    def _mark_interrupted(self, con: sqlite3.Connection) -> None:
        """Runs marked running whose trainer is gone become `interrupted` (written, so it sticks)."""
        rows = con.execute("SELECT id, pid, host, heartbeat FROM runs WHERE status = ?", (Status.RUNNING,))
        for row in rows.fetchall():
            if not trainer_alive(row["pid"], row["host"], row["heartbeat"]):
                con.execute(
                    "UPDATE runs SET status = ?, message = ?, ended = ? WHERE id = ? AND status = ?",
                    (Status.INTERRUPTED, INTERRUPTED_MESSAGE, time.time(), row["id"], Status.RUNNING),
                )


class StepWriter:
    """A trainer's step metrics on one open connection, written in one short transaction at most every
    flush_s seconds (the first step at once). Opening a connection and committing per step costs about a
    millisecond, as much as a small model's whole step; batching keeps the store off the critical path.
    The stop column is read at each flush, so a Stop from another process lands within one batch or
    flush_s, whichever is longer. A SIGKILL loses at most the last flush_s of steps, never consistency."""

    def __init__(self, store: RunStore, run_id: str, flush_s: float = 0.2):
        self.con, self.run_id, self.flush_s = store.connect(), run_id, flush_s
        self.pending: list[tuple] = []
        self.metrics: list[tuple] = []  # rows of the metrics table (a step's training accuracy)
        self.last_flush = -float("inf")
        self.stop = False

    def step(self, step: int, epoch: int, train_loss: float, lr: float, samples_per_sec: float) -> bool:
        """Buffer one step; flush when due. Returns whether a stop was requested (as of the last flush)."""
        self.pending.append((self.run_id, step, epoch, train_loss, lr, samples_per_sec))
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()
        return self.stop

    def metric(self, step: int, epoch: int, name: str, value: float) -> None:
        """Buffer one extra metric of a step; it is written with the next flush of steps."""
        self.metrics.append((self.run_id, step, epoch, name, value))

    def flush(self) -> bool:
        """Write buffered steps and the heartbeat in one transaction, and read the stop column.

        Raises:
            StoreError: when the store can no longer be written (one sentence).
        """
        try:
            with self.con:
                self.con.executemany("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?)", self.pending)
                self.con.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", self.metrics)
                self.con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), self.run_id))
                row = self.con.execute("SELECT stop_requested FROM runs WHERE id = ?", (self.run_id,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"The run store cannot be written any more ({e}); the run ends here.") from None
        self.pending.clear()
        self.metrics.clear()
        self.last_flush = time.monotonic()
        self.stop = bool(row and row[0])
        return self.stop

    def close(self) -> None:
        self.flush()
        self.con.close()


def new_run_id() -> str:
    """A fresh run id: creation time to the second, then 6 random hex digits (sortable by time)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _read_only(folder: Path, db: Path) -> bool:
    """Whether this process cannot write the store (the folder, or an existing database file)."""
    return not os.access(folder, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK))


def _interrupted_if_dead(record: RunRecord) -> RunRecord:
    if record.status != Status.RUNNING or trainer_alive(record.pid, record.host, record.heartbeat):
        return record
    return replace(record, status=Status.INTERRUPTED, message=INTERRUPTED_MESSAGE)


def _upsert(table: str, columns: list[str]) -> str:
    """INSERT of (run_id, *columns) that, on a row already there, keeps its values where the new ones are NULL."""
    key, rest = columns[0], columns[1:]
    keep = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" for c in rest)
    return (
        f"INSERT INTO {table} (run_id, {', '.join(columns)}) VALUES ({', '.join('?' * (len(columns) + 1))})"
        f" ON CONFLICT (run_id, {key}) DO UPDATE SET {keep}"
    )


def _add_columns(con: sqlite3.Connection) -> None:
    """Add the columns an older database lacks (guarded: ALTER TABLE ADD COLUMN fails on a duplicate)."""
    for table, added in _ADDED_COLUMNS.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        for name, kind in added.items():
            if name in have:
                continue
            try:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as e:  # another process added it between our check and now
                if "duplicate column" not in str(e):
                    raise


def _record(row: sqlite3.Row) -> RunRecord:
    """The row as a RunRecord; a value no page could use (an older import's NaN time, text config) reads as
    unknown, so every page still lists the run and it can be deleted."""
    final = {c: row[f"f_{c}"] for c in EPOCH_COLUMNS} if row["f_epoch"] is not None else {}
    return RunRecord(
        id=row["id"],
        name=str(row["name"] or row["id"]),
        created=_time(row["created"]) or 0.0,
        config=_json(row["config"], dict),
        fingerprint=row["fingerprint"] or "",
        root=row["root"] or "",
        classes=[str(c) for c in _json(row["classes"], list)],
        status=row["status"],
        message=row["message"] or "",
        owner=row["owner"],
        pid=row["pid"],
        host=row["host"] or "",
        heartbeat=_time(row["heartbeat"]),
        ended=_time(row["ended"]),
        stop_requested=bool(row["stop_requested"]),
        total_steps=row["total_steps"]
        if isinstance(row["total_steps"], int) and 0 < row["total_steps"] < 2**53
        else None,
        checkpoint=row["checkpoint"],
        final=final,
        parent=row["parent"],
        sweep=row["sweep"],
    )


def _time(value: object) -> float | None:
    """A stored time in seconds since 1970, or None when it is no time (NULL, NaN, text, out of range)."""
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 2e10 else None


def _json(text: str | None, kind: type) -> dict | list:
    """A stored JSON column as `kind`, empty when it is missing or not that."""
    try:
        value = json.loads(text or "null")
    except (TypeError, ValueError):
        return kind()
    return value if isinstance(value, kind) else kind()

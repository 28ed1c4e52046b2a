"""Sweeps in the run store: one row per sweep (its base recipe and the values it varies, owner, driver
process, status, stop flag); each of its runs carries the sweep's id in `runs.sweep`.

A sweep's runs train one after another in one driver process (`python -m lib sweep`), so the queue lives
in the store and survives the page that started it. Stopping a sweep sets its flag (the driver starts no
further run) and asks its running run to stop after the current batch.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass

from lib.runs.status import Status
from lib.runs.store import RunRecord, RunStore, trainer_alive

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY, created REAL, owner TEXT, root TEXT, base TEXT, axes TEXT, total INTEGER,
    pid INTEGER, host TEXT, heartbeat REAL, status TEXT, message TEXT, stop_requested INTEGER NOT NULL DEFAULT 0,
    ended REAL);
"""
DRIVER_GONE = "The sweep's driver process ended without finishing (killed or crashed); its finished runs are kept."


@dataclass(frozen=True)
class SweepRecord:
    id: str
    created: float
    owner: str | None
    root: str
    base: dict  # the TrainConfig every run starts from
    axes: list  # [[field, [values...]], ...]: one or two hyperparameters and their values
    total: int  # runs in the grid
    pid: int | None
    host: str
    status: str
    message: str
    stop_requested: bool


@contextmanager
def _db(store: RunStore):
    con = store.connect()
    try:
        with con:
            con.executescript(_SCHEMA)
            yield con
    finally:
        con.close()


def create_sweep(
    store: RunStore, base: dict, axes: list, total: int, *, root: str, owner: str | None, pid: int | None = None
) -> str:
    """Add a sweep with status `running` and return its id."""
    sweep_id = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    now = time.time()
    with _db(store) as con:
        con.execute(
            "INSERT INTO sweeps (id, created, owner, root, base, axes, total, pid, host, heartbeat, status, message)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
            (sweep_id, now, owner, str(root), json.dumps(base), json.dumps(axes), total, pid,
             socket.gethostname(), now, Status.RUNNING),
        )  # fmt: skip
    return sweep_id


def update_sweep(store: RunStore, sweep_id: str, **values) -> None:
    """Set pid and/or message of a sweep."""
    if not set(values) <= {"pid", "message"}:
        raise ValueError(f"Cannot update {sorted(values)} of a sweep; only pid and message.")
    cols = ", ".join(f"{k} = ?" for k in values)
    with _db(store) as con:
        con.execute(f"UPDATE sweeps SET {cols}, heartbeat = ? WHERE id = ?", (*values.values(), time.time(), sweep_id))


def finish_sweep(store: RunStore, sweep_id: str, status: str, message: str = "") -> None:
    with _db(store) as con:
        con.execute(
            "UPDATE sweeps SET status = ?, message = ?, ended = ? WHERE id = ?",
            (status, message, time.time(), sweep_id),
        )


def request_sweep_stop(store: RunStore, sweep_id: str) -> None:
    """Stop the whole sweep: no further run starts, and its running run stops after the current batch."""
    with _db(store) as con:
        con.execute("UPDATE sweeps SET stop_requested = 1 WHERE id = ?", (sweep_id,))
    for run in sweep_runs(store, sweep_id):
        if run.status == Status.RUNNING:
            store.request_stop(run.id)


def get_sweep(store: RunStore, sweep_id: str) -> SweepRecord | None:
    found = _select(store, "WHERE id = ?", (sweep_id,))
    return found[0] if found else None


def list_sweeps(store: RunStore, owner: str | None = None) -> list[SweepRecord]:
    """Every sweep, newest first; only `owner`'s when given (deployed mode)."""
    return _select(store, "WHERE owner = ?", (owner,)) if owner is not None else _select(store, "", ())


def sweep_runs(store: RunStore, sweep_id: str) -> list[RunRecord]:
    """The sweep's runs so far, in the order they started."""
    return sorted((r for r in store.list_runs() if r.sweep == sweep_id), key=lambda r: r.created)


def sweep_winner(runs: list[RunRecord]) -> str | None:
    """The id of the run with the highest final validation accuracy (ties: the lower validation loss),
    among runs that finished at least one epoch; None when none did."""
    scored = [r for r in runs if r.final.get("val_accuracy") is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r.final["val_accuracy"], -(r.final.get("val_loss") or 0.0))).id


def _select(store: RunStore, where: str, params: tuple) -> list[SweepRecord]:
    with _db(store) as con:
        _mark_interrupted(con)
        rows = con.execute(f"SELECT * FROM sweeps {where} ORDER BY created DESC", params).fetchall()
    return [_record(row) for row in rows]


def _mark_interrupted(con: sqlite3.Connection) -> None:
    """A sweep marked running whose driver is gone becomes `interrupted`."""
    for row in con.execute(
        "SELECT id, pid, host, heartbeat FROM sweeps WHERE status = ?", (Status.RUNNING,)
    ).fetchall():
        if row["pid"] is not None and not trainer_alive(row["pid"], row["host"], row["heartbeat"]):
            con.execute(
                "UPDATE sweeps SET status = ?, message = ?, ended = ? WHERE id = ? AND status = ?",
                (Status.INTERRUPTED, DRIVER_GONE, time.time(), row["id"], Status.RUNNING),
            )


def _record(row: sqlite3.Row) -> SweepRecord:
    return SweepRecord(
        id=row["id"],
        created=row["created"],
        owner=row["owner"],
        root=row["root"] or "",
        base=json.loads(row["base"] or "{}"),
        axes=json.loads(row["axes"] or "[]"),
        total=int(row["total"] or 0),
        pid=row["pid"],
        host=row["host"] or "",
        status=row["status"],
        message=row["message"] or "",
        stop_requested=bool(row["stop_requested"]),
    )

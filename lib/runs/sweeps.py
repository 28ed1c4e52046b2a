"""Sweeps in the run store (the `sweeps` table, created and healed with the rest): one row per sweep (its base recipe and the values it varies, owner, driver
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
from dataclasses import dataclass, replace

from lib.runs.liveness import trainer_alive
from lib.runs.status import Status
from lib.runs.store import RunRecord, RunStore, heals

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
    heartbeat: float | None = None
    visitor: str | None = None  # who started it (lib/app/sessions.visitor_id); its runs carry it

    def driver_gone(self) -> bool:
        """Whether the sweep is marked running but its driver process has ended."""
        if self.status != Status.RUNNING or self.pid is None:
            return False
        return not trainer_alive(self.pid, self.host, self.heartbeat)


@heals
def create_sweep(
    store: RunStore,
    base: dict,
    axes: list,
    total: int,
    *,
    root: str,
    owner: str | None,
    pid: int | None = None,
    visitor: str | None = None,
) -> str:
    """Add a sweep with status `running` and return its id."""
    sweep_id = new_sweep_id()
    now = time.time()
    with store.transaction() as con:
        con.execute(
            "INSERT INTO sweeps (id, created, owner, root, base, axes, total, pid, host, heartbeat, status, message,"
            " visitor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
            (sweep_id, now, owner, str(root), json.dumps(base), json.dumps(axes), total, pid,
             socket.gethostname(), now, Status.RUNNING, visitor),
        )  # fmt: skip
    return sweep_id


def new_sweep_id() -> str:
    """A fresh sweep id: 'sweep-', its creation time to the second, then 4 random hex digits."""
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@heals
def update_sweep(store: RunStore, sweep_id: str, **values) -> None:
    """Set pid and/or message of a sweep."""
    if not set(values) <= {"pid", "message"}:
        raise ValueError(f"Cannot update {sorted(values)} of a sweep; only pid and message.")
    cols = ", ".join(f"{k} = ?" for k in values)
    with store.transaction() as con:
        con.execute(f"UPDATE sweeps SET {cols}, heartbeat = ? WHERE id = ?", (*values.values(), time.time(), sweep_id))


@heals
def finish_sweep(store: RunStore, sweep_id: str, status: str, message: str = "") -> None:
    with store.transaction() as con:
        con.execute(
            "UPDATE sweeps SET status = ?, message = ?, ended = ? WHERE id = ?",
            (status, message, time.time(), sweep_id),
        )


@heals
def request_sweep_stop(store: RunStore, sweep_id: str) -> None:
    """Stop the whole sweep: no further run starts, and its running run stops after the current batch."""
    with store.transaction() as con:
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


def live_sweeps(store: RunStore, owner: str | None, visitor: str | None) -> list[SweepRecord]:
    """The sweeps still running that this tab (owner) or this visitor started; a driver that is gone does
    not count. A sweep counts from its creation, before its driver has started a run."""
    where, params = "WHERE status = ? AND (owner = ? OR visitor = ?)", (Status.RUNNING, owner, visitor)
    return [r for r in _select(store, where, params) if r.status == Status.RUNNING]


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


@heals
def _select(store: RunStore, where: str, params: tuple) -> list[SweepRecord]:
    if store.read_only and not store.path.exists():
        return []
    with store.transaction() as con:
        rows = con.execute(f"SELECT * FROM sweeps {where} ORDER BY created DESC", params).fetchall()
        records = [_record(row) for row in rows]
        gone = {r.id for r in records if r.driver_gone()}
        if not store.read_only:
            _mark_interrupted(con, gone)
    # Read-only too: a dead driver's sweep reads as interrupted, written or not.
    return [replace(r, status=Status.INTERRUPTED, message=DRIVER_GONE) if r.id in gone else r for r in records]


def _mark_interrupted(con: sqlite3.Connection, sweep_ids: set[str]) -> None:
    """Sweeps whose driver is gone become `interrupted` (written, so it sticks)."""
    for sweep_id in sweep_ids:
        con.execute(
            "UPDATE sweeps SET status = ?, message = ?, ended = ? WHERE id = ? AND status = ?",
            (Status.INTERRUPTED, DRIVER_GONE, time.time(), sweep_id, Status.RUNNING),
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
        heartbeat=row["heartbeat"],
        visitor=row["visitor"],
    )

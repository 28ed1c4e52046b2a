"""The run store: round trips, WAL readers beside a writer, interrupted runs, and SIGKILL consistency."""

import math
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lib.runs.store import INTERRUPTED_MESSAGE, RunStore
from tests.train_helpers import wait_for_steps

ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_metrics_and_status_round_trip(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({"model": "mlp", "epochs": 1}, owner="s1", pid=os.getpid(), name="first")
    rows = [(1, 1, 1.5, 0.1, 100.0), (2, 1, 1.2, 0.1, 110.0), (3, 1, 0.9, 0.05, 120.0)]
    for row in rows:
        assert store.record_step(run_id, *row) is False
    store.record_epoch(run_id, epoch=1, train_loss=1.2, val_loss=1.0, val_accuracy=0.5, lr=0.05, samples_per_sec=115.0)
    store.finish(run_id, "completed", "done")
    assert [tuple(r) for r in store.steps(run_id).itertuples(index=False)] == rows
    assert list(store.steps(run_id, since_step=2)["step"]) == [3]
    record = RunStore(tmp_path).get_run(run_id)  # a fresh handle: survives a restart
    assert (record.status, record.message, record.name, record.owner) == ("completed", "done", "first", "s1")
    assert record.final["val_accuracy"] == 0.5 and record.config == {"model": "mlp", "epochs": 1}
    assert [r.id for r in store.list_runs(owner="s1")] == [run_id] and store.list_runs(owner="s2") == []


def test_unknown_final_status_is_refused(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="Unknown final status"):
        store.finish(store.create_run({}), "exploded")


def test_readers_see_committed_rows_while_a_writer_holds_its_transaction(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({}, pid=os.getpid())
    store.record_step(run_id, 1, 1, 1.0, 0.1, 10.0)
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer = sqlite3.connect(store.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO steps VALUES (?, 2, 1, 0.5, 0.1, 10.0)", (run_id,))
    assert list(store.steps(run_id)["step"]) == [1]  # not blocked, and no uncommitted row
    writer.execute("COMMIT")
    writer.close()
    assert list(store.steps(run_id)["step"]) == [1, 2]


def test_a_running_run_whose_process_is_gone_reads_as_interrupted_with_metrics_kept(tmp_path):
    store = RunStore(tmp_path)
    alive = store.create_run({}, pid=os.getpid())
    dead = store.create_run({}, pid=_dead_pid())
    store.record_step(dead, 1, 1, 2.0, 0.1, 10.0)
    assert store.get_run(alive).status == "running"
    record = store.get_run(dead)
    assert (record.status, record.message) == ("interrupted", INTERRUPTED_MESSAGE)
    assert len(store.steps(dead)) == 1
    assert [r.id for r in store.running()] == [alive]


def test_another_hosts_run_is_interrupted_only_when_its_heartbeat_is_stale(tmp_path):
    store = RunStore(tmp_path)
    fresh, stale = store.create_run({}, pid=1), store.create_run({}, pid=1)
    with sqlite3.connect(store.path) as con:
        con.execute("UPDATE runs SET host = 'elsewhere'")
        con.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time() - 3600, stale))
    assert store.get_run(fresh).status == "running"
    assert store.get_run(stale).status == "interrupted"


def test_stop_request_reaches_the_trainer_through_the_step_write(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({}, pid=os.getpid())
    assert store.record_step(run_id, 1, 1, 1.0, 0.1, 1.0) is False
    RunStore(tmp_path).request_stop(run_id)  # from another handle, as another process would
    assert store.record_step(run_id, 2, 1, 1.0, 0.1, 1.0) is True


def test_the_step_writer_writes_the_first_step_at_once_buffers_the_rest_and_flushes_on_close(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({}, pid=os.getpid())
    writer = store.step_writer(run_id, flush_s=3600)
    for step in range(1, 6):
        assert writer.step(step, 1, 1.0 / step, 0.1, 10.0) is False
    assert list(store.steps(run_id)["step"]) == [1]  # first at once, the rest buffered
    store.request_stop(run_id)
    assert writer.flush() is True and writer.step(6, 1, 0.1, 0.1, 10.0) is True
    writer.close()
    assert list(store.steps(run_id)["step"]) == [1, 2, 3, 4, 5, 6]


def test_checkpoint_round_trip(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({})
    with pytest.raises(ValueError, match="no last checkpoint"):
        store.files.load_checkpoint(run_id)
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "classes": ["a", "b"], "mean": [0.5] * 3}
    path = store.files.save_checkpoint(run_id, state, "best")
    assert path.endswith(f"{run_id}/best.pt") and not store.files.checkpoint_path(run_id, "last").exists()
    loaded = store.files.load_checkpoint(run_id, "best")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert (loaded["classes"], loaded["mean"]) == (["a", "b"], [0.5] * 3)
    with pytest.raises(ValueError, match="choose one of last, best"):
        store.files.checkpoint_path(run_id, "first")


def test_a_checkpoint_that_would_run_code_on_load_is_refused(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({})
    store.files.save_checkpoint(run_id, {"model": {}, "hook": print})  # a pickled function, not plain data
    with pytest.raises(pickle.UnpicklingError):
        store.files.load_checkpoint(run_id)


def test_sigkill_mid_run_leaves_a_consistent_store_and_an_interrupted_run(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "train",
        "sample",
        "--runs-dir",
        str(tmp_path),
        "--model",
        "mlp",
        "--epochs",
        "100",
        "--batch-size",
        "8",
        "--image-size",
        "16",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(tmp_path)

    try:
        run_id = wait_for_steps(store, proc, 2)
    finally:
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
    record = RunStore(tmp_path).get_run(run_id)
    assert record.status == "interrupted"
    steps = store.steps(run_id)
    assert len(steps) >= 2 and list(steps["step"]) == list(range(1, len(steps) + 1))
    assert all(math.isfinite(x) for x in steps["train_loss"])
    with sqlite3.connect(store.path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_parent_and_sweep_round_trip_and_an_older_database_gains_the_columns(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "runs.sqlite") as con:  # the first release's runs table, without the columns
        con.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, created REAL, config TEXT, fingerprint TEXT,"
            " root TEXT, classes TEXT, status TEXT, message TEXT, owner TEXT, pid INTEGER, host TEXT,"
            " heartbeat REAL, ended REAL, stop_requested INTEGER NOT NULL DEFAULT 0, total_steps INTEGER,"
            " checkpoint TEXT)"
        )
        con.execute("INSERT INTO runs (id, created, config, status) VALUES ('r0', 1.0, '{}', 'completed')")
    store = RunStore(old)
    assert (store.get_run("r0").parent, store.get_run("r0").sweep) == (None, None)
    child = store.create_run({}, parent="r0", sweep="sw1")
    assert (store.get_run(child).parent, store.get_run(child).sweep) == ("r0", "sw1")
    assert store.get_run(child).summary()["parent"] == "r0"
    RunStore(old)  # opening again finds the columns and adds nothing
    with sqlite3.connect(old / "runs.sqlite") as con:
        names = [row[1] for row in con.execute("PRAGMA table_info(runs)")]
    assert names.count("parent") == 1 and names.count("sweep") == 1

"""The run store heals: lost tables, a damaged file, a read-only folder, a trainer that cannot write,
trainers that end with their server, and the per-visitor and global run caps."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import wait_for

from lib.app.sessions import visitor_id
from lib.runs.status import Status
from lib.runs.store import RunStore, StoreError
from lib.runs.sweeps import create_sweep, list_sweeps
from lib.settings import Settings
from lib.training.runner import check_capacity, interrupt_orphans, next_free_sentence
from tests.helpers import run_unprivileged, world_readable_dir

ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_deleted_database_gets_its_tables_back(tmp_path):
    store = RunStore(tmp_path)
    store.create_run({"model": "mlp"})
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    assert list_sweeps(store) == []  # every table comes back, the sweeps' too
    assert store.list_runs() == []  # was: sqlite3.OperationalError "no such table: runs"
    run_id = store.create_run({"model": "cnn"})
    assert [r.id for r in store.list_runs()] == [run_id]


def test_a_damaged_database_is_moved_aside_and_named(tmp_path):
    store = RunStore(tmp_path)
    store.create_run({})
    garbage = b"this is not a database" * 100
    store.path.write_bytes(garbage)
    Path(f"{store.path}-wal").unlink(missing_ok=True)
    assert store.list_runs() == []  # was: sqlite3.DatabaseError "file is not a database"
    (aside,) = tmp_path.glob("runs.sqlite.damaged-*[0-9]")
    assert aside.read_bytes() == garbage and aside.name in store.notice
    assert ". " not in store.notice and store.notice.endswith("started.")  # one sentence
    # A fresh server opening a damaged file heals on opening, and says so.
    store.path.write_bytes(garbage)
    again = RunStore(tmp_path)
    assert "damaged" in again.notice and again.list_runs() == []


def _leave_read_only(store: RunStore) -> None:
    """Every row in the database file itself, and no file writable but by its owner (root)."""
    with sqlite3.connect(store.path) as con:  # checkpoint the WAL so the file alone holds every row
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for p in store.root.iterdir():
        p.chmod(0o644)


def test_a_read_only_runs_folder_still_lists_runs_without_writing(tmp_path):
    folder = world_readable_dir("ts-ro-store-")
    try:
        store = RunStore(folder)
        done = store.create_run({"model": "mlp"}, name="done")
        store.finish(done, Status.COMPLETED)
        dead = store.create_run({"model": "cnn"}, name="dead", pid=_dead_pid())
        _leave_read_only(store)
        code = f"""
import json
from lib.runs.store import RunStore, StoreError
s = RunStore({str(folder)!r})
out = {{"read_only": s.read_only, "runs": {{r.name: r.status for r in s.list_runs()}}}}
try:
    s.create_run({{}})
except StoreError as e:
    out["write"] = str(e)
print(json.dumps(out))
"""
        done_proc = run_unprivileged(code)
        assert done_proc.returncode == 0, done_proc.stderr
        out = json.loads(done_proc.stdout)
        assert out["read_only"] and out["runs"] == {"done": "completed", "dead": "interrupted"}
        assert "read-only" in out["write"] and "Traceback" not in done_proc.stderr
        # Reading did not write: the dead run is still `running` on disk until a writer opens the store.
        with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as con:
            assert con.execute("SELECT status FROM runs WHERE id = ?", (dead,)).fetchone()[0] == "running"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_trainer_that_cannot_write_its_store_says_so_in_one_line():
    folder = world_readable_dir("ts-ro-train-")
    try:
        RunStore(folder)
        for p in folder.iterdir():
            p.chmod(0o644)
        code = "import sys; from lib.__main__ import main; sys.exit(main(sys.argv[1:]))"
        done = run_unprivileged(
            code.replace("sys.argv[1:]", repr(["train", "sample", "--runs-dir", str(folder), "--epochs", "1"])),
            env={"TORCHSCOPE_CACHE_DIR": str(folder / "cache")},
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "not writable" in done.stderr and "Traceback" not in done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_store_that_fails_mid_run_ends_the_trainer_with_one_line(tmp_path, monkeypatch, capsys):
    from lib.__main__ import main

    def broken(self, *args, **kwargs):
        raise StoreError("The run store cannot be used (disk I/O error); check the runs folder's disk and permissions.")

    monkeypatch.setattr(RunStore, "record_epoch", broken)
    monkeypatch.setattr(RunStore, "finish", broken)
    code = main(["train", "sample", "--model", "linear", "--image-size", "8", "--epochs", "1", "--max-batches", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: The run store cannot be used")


def test_a_run_over_its_time_limit_ends_stopped_with_the_reason(tmp_path, capsys):
    from lib.__main__ import main

    args = ["train", "sample", "--model", "linear", "--image-size", "8", "--epochs", "100000"]
    code = main([*args, "--runs-dir", str(tmp_path), "--max-minutes", "0.01", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 4 and summary["status"] == "stopped" and "limit per run" in summary["message"]
    record = RunStore(tmp_path).get_run(summary["run_id"])
    assert record.status == "stopped" and "0.01 minutes" in record.message


def test_a_trainer_ends_when_the_process_that_started_it_exits(tmp_path):
    # The parent starts a trainer in its own session (as the app does) and exits at once.
    parent = f"""
import os, subprocess, sys
subprocess.Popen([sys.executable, "-m", "lib", "train", "sample", "--model", "linear", "--image-size", "8",
                  "--epochs", "100000", "--runs-dir", {str(tmp_path)!r}, "--parent-pid", str(os.getpid())],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
    subprocess.run([sys.executable, "-c", parent], cwd=ROOT, check=True, timeout=60)
    store = RunStore(tmp_path)
    (run,) = wait_for(lambda: store.list_runs())
    record = wait_for(lambda: (r := store.get_run(run.id)).status != "running" and r)
    assert record.status == "interrupted" and "server stopped" in record.message


def test_a_restarted_server_ends_and_marks_trainers_left_behind(tmp_path):
    # An orphan: its parent exited, and its command line names that parent as the app that started it.
    parent = """
import os, subprocess, sys
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "--parent-pid", str(os.getpid())],
                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)
"""
    pid = int(subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60).stdout)
    store = RunStore(tmp_path)
    orphan = store.create_run({}, pid=pid)
    mine = store.create_run({}, pid=os.getpid())  # a live trainer of a live parent stays
    assert interrupt_orphans(store) == [orphan]
    assert store.get_run(orphan).status == "interrupted" and store.get_run(mine).status == "running"
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])


def test_runs_per_visitor_count_across_their_tabs(tmp_path):
    store = RunStore(tmp_path)
    same = visitor_id("a" * 32, "203.0.113.9", "Firefox"), visitor_id("b" * 32, "203.0.113.9", "Firefox")
    assert same[0] == same[1] != visitor_id("a" * 32, "203.0.113.9", "Chrome")
    assert visitor_id("a" * 32, None, None) != visitor_id("b" * 32, None, None)  # no address: per session
    store.create_run({}, owner="tab-1", visitor=same[0], pid=os.getpid())
    settings = Settings(max_runs_per_visitor=1, max_runs_global=4)
    with pytest.raises(ValueError, match="counted across your tabs"):
        check_capacity(store, "tab-2", settings, same[1])
    check_capacity(store, "tab-2", settings, visitor_id("c" * 32, "198.51.100.7", "Firefox"))  # someone else


def test_when_all_slots_are_taken_the_sentence_says_when_the_next_frees_up(tmp_path):
    store = RunStore(tmp_path)
    settings = Settings(max_run_minutes=10, max_runs_global=1)
    fresh = store.create_run({"epochs": 1, "batch_size": 10}, pid=os.getpid())
    now = time.time()
    assert "in about 10 min" in next_free_sentence(store, store.running(), settings, now)
    # 40 of 100 steps done at 10 samples/s with batches of 10: 60 s left, sooner than the limit.
    store.update_run(fresh, total_steps=100)
    for step in range(1, 41):
        store.record_step(fresh, step, 1, 1.0, 0.1, 10.0)
    sentence = next_free_sentence(store, store.running(), settings, now)
    assert "in about 1 min" in sentence and time.strftime("%H:%M", time.gmtime(now + 60)) in sentence
    with pytest.raises(ValueError, match="All 1 training slots of this server are taken; the next one"):
        check_capacity(store, "someone", settings)


def test_a_read_only_runs_folder_lists_sweeps_and_refuses_new_ones_in_one_sentence():
    folder = world_readable_dir("ts-ro-sweeps-")
    try:
        store = RunStore(folder)
        gone = create_sweep(store, {"model": "mlp"}, [["lr", [1e-3]]], 1, root="data", owner="s", pid=_dead_pid())
        _leave_read_only(store)
        code = f"""
import json
from lib.runs.store import RunStore, StoreError
from lib.runs.sweeps import create_sweep, list_sweeps
s = RunStore({str(folder)!r})
out = {{"sweeps": {{w.id: w.status for w in list_sweeps(s)}}}}
try:
    create_sweep(s, {{}}, [], 0, root="data", owner=None)
except StoreError as e:
    out["write"] = str(e)
print(json.dumps(out))
"""
        done = run_unprivileged(code)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        out = json.loads(done.stdout)
        assert out["sweeps"] == {gone: "interrupted"}  # its driver is gone: read as such, without writing
        assert "read-only" in out["write"]
        with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as con:
            assert con.execute("SELECT status FROM sweeps WHERE id = ?", (gone,)).fetchone()[0] == "running"
    finally:
        shutil.rmtree(folder, ignore_errors=True)

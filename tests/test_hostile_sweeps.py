"""Issue 23, hole 3: one sweep per tab and visitor at a time, claimed atomically; its runs carry the visitor.

Eight Start sweep clicks at once used to start eight drivers (80 queued epochs against a 10-epoch cap), and
sweep runs were stored with no visitor, so one visitor held every global slot.
"""

import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from lib.data.sample import sample_root
from lib.runs.store import RunStore
from lib.runs.sweeps import create_sweep, finish_sweep, list_sweeps, sweep_runs
from lib.settings import Settings
from lib.training import runner, sweep
from lib.training.config import TrainConfig
from lib.training.watch import StopEvent

TINY = TrainConfig(model="mlp", image_size=8, batch_size=16, max_batches=2, epochs=1)
DEPLOYED = Settings(mode="deployed", max_epochs=10, max_image_size=128, max_runs_global=2, max_runs_per_visitor=1)


@pytest.fixture
def drivers(monkeypatch):
    """start_sweep's driver replaced by an idle process: it never starts a run (the window the clicks used)."""
    started = []

    def idle_driver(args, log, settings):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        started.append(proc)
        return proc

    monkeypatch.setattr(sweep, "launch", idle_driver)
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def click(store, owner, visitor, results):
    try:
        results.append(sweep.start_sweep(TINY, [["lr", [1e-3, 2e-3]]], sample_root(), store, owner,
                                         settings=DEPLOYED, visitor=visitor))  # fmt: skip
    except ValueError as e:
        results.append(e)


def test_eight_clicks_at_once_start_one_sweep(tmp_path, drivers):
    store, results = RunStore(tmp_path), []
    clicks = [threading.Thread(target=click, args=(store, "tab1", "v1", results)) for _ in range(8)]
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()
    started = [r for r in results if isinstance(r, str)]
    assert len(started) == 1 and len(drivers) == 1 and len(list_sweeps(store)) == 1
    assert all("is still running" in str(r) for r in results if not isinstance(r, str))


def test_another_tab_of_the_visitor_is_refused_and_another_visitor_is_not(tmp_path, drivers):
    store, results = RunStore(tmp_path), []
    click(store, "tab1", "v1", results)
    click(store, "tab2", "v1", results)  # the same browser's second tab
    click(store, "tab3", "v2", results)  # someone else
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert "is still running" in str(results[1])
    finish_sweep(store, results[0], "completed")  # once it ends, the visitor may start the next
    click(store, "tab2", "v1", results)
    assert isinstance(results[3], str)


def test_a_sweeps_runs_carry_its_visitor_and_count_against_their_cap(tmp_path):
    store = RunStore(tmp_path)
    sweep_id = create_sweep(store, TINY.to_dict(), [["lr", [1e-3]]], 1, root=str(sample_root()), owner="tab1",
                            visitor="v1")  # fmt: skip
    sweep.drive_sweep(store, sweep_id, Settings(), StopEvent(), cache_bytes=2**30)
    (run,) = sweep_runs(store, sweep_id)
    assert store.run_row(run.id)["visitor"] == "v1"
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:  # as if it were still training
        con.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = ?", (os.getpid(), run.id))
    assert [r.id for r in store.running_of_visitor("v1")] == [run.id]
    with pytest.raises(ValueError, match="counted across your tabs"):  # the visitor's other tab: no second run
        runner.check_capacity(store, "tab2", DEPLOYED, "v1")

"""Sweeps: the grid, the limits on the whole sweep, runs trained one after another and grouped, the winner,
Stop ending the whole sweep, a queued run waiting for a free slot, each run's time limit, and the driver
ending with the app's server."""

import json
import os
import threading
import types
from pathlib import Path

import pytest
from train_helpers import wait_for

from lib.__main__ import main
from lib.data.sample import sample_root
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.runs.sweeps import create_sweep, get_sweep, list_sweeps, request_sweep_stop, sweep_runs, sweep_winner
from lib.settings import Settings
from lib.training.config import TrainConfig
from lib.training.sweep import check_sweep_limits, drive_sweep, grid, parse_values, start_sweep
from lib.training.watch import StopEvent

TINY = TrainConfig(model="mlp", image_size=8, batch_size=16, max_batches=2, epochs=1)


def test_the_grid_is_every_combination_named_by_what_it_varies():
    configs = grid(TINY, [["lr", [1e-3, 1e-2]], ["batch_size", [16, 32, 64]]])
    assert [(c.lr, c.batch_size) for c in configs] == [(a, b) for a in (1e-3, 1e-2) for b in (16, 32, 64)]
    assert configs[0].name == "lr=0.001 batch_size=16" and {c.model for c in configs} == {"mlp"}
    assert parse_values("lr", "1e-3, 3e-3,1e-3,") == [1e-3, 3e-3]
    with pytest.raises(ValueError, match="not a valid batch_size"):
        parse_values("batch_size", "32, big")
    with pytest.raises(ValueError, match="Cannot sweep"):
        parse_values("val_split", "0.1")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        grid(TINY, [["optimizer", ["adam", "rmsprop"]]])
    with pytest.raises(ValueError, match="one or two"):
        grid(TINY, [["lr", [1e-3]], ["seed", [1]], ["epochs", [1]]])


def test_the_epoch_limit_covers_the_whole_sweep(tmp_path):
    configs = grid(TINY.__class__(epochs=4), [["lr", [1e-3, 1e-2, 1e-1]]])  # 3 runs x 4 epochs = 12
    check_sweep_limits(configs, Settings(max_epochs=12))
    with pytest.raises(ValueError, match="12 epochs in all .* at most 10"):
        check_sweep_limits(configs, Settings(max_epochs=10))
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="at most 10"):
        start_sweep(
            TrainConfig(epochs=4),
            [["lr", [1e-3, 1e-2, 1e-1]]],
            sample_root(),
            store,
            "s",
            settings=Settings(max_epochs=10),
        )
    assert list_sweeps(store) == [] and store.list_runs() == []  # refused before anything was queued


def test_cli_sweep_trains_every_run_in_turn_and_names_the_winner(tmp_path, capsys):
    args = ["sweep", "sample", "--vary", "lr=1e-4,1e-2", "--vary", "batch-size=16,32", "--model", "mlp"]
    code = main(
        [*args, "--image-size", "8", "--max-batches", "2", "--epochs", "1", "--runs-dir", str(tmp_path), "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    store = RunStore(tmp_path)
    runs = sweep_runs(store, out["sweep_id"])
    assert [r.name for r in runs] == ["lr=0.0001 batch_size=16", "lr=0.0001 batch_size=32", "lr=0.01 batch_size=16",
                                      "lr=0.01 batch_size=32"]  # fmt: skip
    assert all(r.status == "completed" and r.sweep == out["sweep_id"] for r in runs)
    assert all(a.ended <= b.created for a, b in zip(runs, runs[1:])), "one after another, never overlapping"
    best = max(runs, key=lambda r: r.final["val_accuracy"])
    assert out["winner"] == best.id == sweep_winner(runs)
    assert get_sweep(store, out["sweep_id"]).status == "completed"


def test_stop_ends_the_whole_sweep_from_another_process(tmp_path):
    store = RunStore(tmp_path)
    base = TrainConfig(model="mlp", image_size=8, batch_size=8, epochs=30)
    sweep_id = start_sweep(base, [["lr", [1e-3, 2e-3, 3e-3]]], sample_root(), store, "s1", settings=Settings())
    wait_for(lambda: sweep_runs(store, sweep_id) and len(store.steps(sweep_runs(store, sweep_id)[0].id)) >= 2)
    # The driver ends with this server and gives each run the server's time limit.
    cmdline = Path(f"/proc/{get_sweep(store, sweep_id).pid}/cmdline").read_bytes().decode().split("\0")
    assert cmdline[cmdline.index("--parent-pid") + 1] == str(os.getpid())
    assert float(cmdline[cmdline.index("--max-minutes") + 1]) == Settings().max_run_minutes
    request_sweep_stop(store, sweep_id)
    sweep = wait_for(lambda: (s := get_sweep(store, sweep_id)).status != "running" and s)
    assert sweep.status == "stopped", sweep.message
    (run,) = sweep_runs(store, sweep_id)  # no second run started
    assert run.status == "stopped" and run.owner == "s1"


def test_a_queued_run_waits_for_a_free_slot(tmp_path, monkeypatch):
    monkeypatch.setattr("lib.training.sweep.WAIT_S", 0.05)
    store = RunStore(tmp_path)
    busy = store.create_run({"model": "mlp"}, owner="s1", pid=os.getpid())  # this owner's other run, training
    sweep_id = create_sweep(store, TINY.to_dict(), [["lr", [1e-3]]], 1, root=str(sample_root()), owner="s1")
    thread = threading.Thread(target=drive_sweep, args=(store, sweep_id, Settings(), threading.Event()),
                              kwargs={"cache_bytes": 2**30})  # fmt: skip
    thread.start()
    wait_for(lambda: get_sweep(store, sweep_id).message.startswith("waiting"))
    assert sweep_runs(store, sweep_id) == []
    store.finish(busy, "completed")
    thread.join(timeout=120)
    assert get_sweep(store, sweep_id).status == "completed" and len(sweep_runs(store, sweep_id)) == 1


def _sweep_of(store: RunStore, lrs: list[float], epochs: int = 30) -> str:
    base = TrainConfig(model="mlp", image_size=8, batch_size=8, epochs=epochs)
    return create_sweep(store, base.to_dict(), [["lr", lrs]], len(lrs), root=str(sample_root()), owner="s1")


def test_each_run_has_the_time_limit_of_its_own_and_the_sweep_goes_on(tmp_path):
    store = RunStore(tmp_path)
    sweep_id = _sweep_of(store, [1e-3, 2e-3])  # 30 epochs each: far longer than the 1.2 s limit
    outcome = drive_sweep(store, sweep_id, Settings(), StopEvent(), cache_bytes=2**30, max_minutes=0.02)
    runs = sweep_runs(store, sweep_id)
    assert outcome.status == "completed" and get_sweep(store, sweep_id).status == "completed"
    assert [r.status for r in runs] == ["stopped", "stopped"]  # the second run started after the first's limit
    assert all("0.02 minutes, this server's limit per run" in r.message for r in runs), [r.message for r in runs]
    assert all(len(store.steps(r.id)) < 30 * 64 for r in runs)


def test_the_servers_end_interrupts_the_running_run_and_the_sweep(tmp_path):
    store = RunStore(tmp_path)
    sweep_id = _sweep_of(store, [1e-3, 2e-3])
    stop = StopEvent()
    thread = threading.Thread(target=drive_sweep, args=(store, sweep_id, Settings(), stop),
                              kwargs={"cache_bytes": 2**30})  # fmt: skip
    thread.start()
    wait_for(lambda: sweep_runs(store, sweep_id) and len(store.steps(sweep_runs(store, sweep_id)[0].id)) >= 2)
    stop.stop("The app's server stopped while the run trained; metrics up to then are kept.", Status.INTERRUPTED)
    thread.join(timeout=120)
    (run,) = sweep_runs(store, sweep_id)  # no second run started
    assert run.status == "interrupted" and run.message.startswith("The app's server stopped")
    assert get_sweep(store, sweep_id).status == "interrupted"


def test_cli_sweep_whose_parent_goes_away_ends_interrupted(tmp_path, monkeypatch):
    """The server that started the sweep exits while its first run trains: that run and the sweep end
    interrupted, and the second run never starts."""
    import lib.training.watch as watch

    server = os.getppid()

    def parent() -> int:  # what the watch sees: the server, until the first run has trained a step
        store = RunStore(tmp_path)
        runs = [r for s in list_sweeps(store) for r in sweep_runs(store, s.id)]
        return 1 if runs and len(store.steps(runs[0].id)) else server

    monkeypatch.setattr(watch, "os", types.SimpleNamespace(getppid=parent))
    args = ["sweep", "sample", "--vary", "lr=1e-3,2e-3", "--model", "cnn", "--image-size", "16", "--epochs", "50"]
    code = main([*args, "--runs-dir", str(tmp_path), "--parent-pid", str(server), "--json"])
    sweep = list_sweeps(RunStore(tmp_path))[0]
    assert code == 4 and sweep.status == "interrupted"
    (run,) = sweep_runs(RunStore(tmp_path), sweep.id)
    assert run.status == "interrupted" and run.message.startswith("The app's server stopped")
    assert main(["sweep", "sample", "--vary", "lr=1e-3", "--max-minutes", "0", "--runs-dir", str(tmp_path)]) == 2

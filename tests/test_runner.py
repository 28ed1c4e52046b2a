"""Starting runs outside the script run: refusals, the global cap, Stop across processes, crash reports."""

import pytest
from train_helpers import wait_for

from lib.data.sample import sample_root
from lib.runs.store import RunStore
from lib.settings import Settings
from lib.training.config import TrainConfig
from lib.training.runner import check_capacity, start_run, stop_run


def _ended(store: RunStore, run_id: str):
    record = store.get_run(run_id)
    return record if record.status != "running" else None


def test_one_run_per_owner_a_global_cap_and_stop_within_a_batch(tmp_path):
    store, settings = RunStore(tmp_path), Settings(max_runs_global=1)
    config = TrainConfig(model="mlp", epochs=100, image_size=16, batch_size=8)
    run_id = start_run(config, sample_root(), store, "alice", settings=settings)
    with pytest.raises(ValueError, match="still training"):
        start_run(config, sample_root(), store, "alice", settings=settings)
    with pytest.raises(ValueError, match="All 1 training slots of this server are taken; the next one should free up"):
        start_run(config, sample_root(), store, "bob", settings=settings)
    wait_for(lambda: len(store.steps(run_id)) >= 2)
    stop_run(run_id, store)
    record = wait_for(lambda: _ended(store, run_id))
    assert record.status == "stopped" and record.checkpoint
    steps = store.steps(run_id)
    assert len(steps) >= 2 and steps["epoch"].max() < 100  # metrics kept, and it did stop early
    check_capacity(store, "alice", settings)  # free again: no exception


def test_a_trainer_that_cannot_start_leaves_a_failed_run_saying_why(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = start_run(TrainConfig(), tmp_path / "no-such-folder", store, "carol", settings=Settings())
    record = wait_for(lambda: _ended(store, run_id))
    assert record.status == "failed" and "does not exist" in record.message


def test_a_config_over_the_servers_limits_is_refused_before_anything_starts(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="at most 10 epochs"):
        start_run(TrainConfig(epochs=11), sample_root(), store, "dave", settings=Settings(max_epochs=10))
    assert store.list_runs() == []


def test_deployed_trainers_split_the_cores():
    from lib.settings import load_settings
    from lib.training.runner import trainer_threads

    two_runs = load_settings({}, env={"TORCHSCOPE_MODE": "deployed", "TORCHSCOPE_MAX_RUNS_GLOBAL": "2"})
    assert [trainer_threads(two_runs, cores) for cores in (1, 2, 16)] == [1, 1, 8]


def test_a_learning_rate_finder_takes_a_training_slot_until_it_ends(tmp_path):
    from lib.app.train_tools import _read_result
    from lib.training.runner import live_finders, start_finder

    store, settings = RunStore(tmp_path), Settings(max_runs_global=2, max_runs_per_visitor=1)
    config = TrainConfig(model="mlp", image_size=8, batch_size=8)
    out = tmp_path / "lr-find" / "alice.log"
    proc = start_finder(config, sample_root(), store, out, "alice", settings, visitor="v1")
    with pytest.raises(ValueError, match="learning-rate finder is still running"):
        start_finder(config, sample_root(), store, tmp_path / "again.log", "alice", settings, visitor="v1")
    with pytest.raises(ValueError, match="1 run\\(s\\) or learning-rate finder\\(s\\) training"):
        start_run(config, sample_root(), store, "alice-tab-2", settings=settings, visitor="v1")  # another tab
    run_id = start_run(
        TrainConfig(model="mlp", epochs=100, image_size=8), sample_root(), store, "bob", settings=settings
    )
    with pytest.raises(ValueError, match="All 2 training slots of this server are taken"):
        check_capacity(store, "carol", settings)  # one run and one finder fill the two slots
    stop_run(run_id, store)
    assert proc.wait(timeout=300) == 0
    result = _read_result(proc.returncode, out)
    assert len(result["lrs"]) == len(result["losses"]) >= 10 and result["suggested_lr"] in result["lrs"]
    wait_for(lambda: _ended(store, run_id))
    assert live_finders() == [] and store.list_runs() == [store.get_run(run_id)]  # the finder wrote no run
    check_capacity(store, "alice", settings, "v1")  # free again: no exception

"""Issue 23, hole 4 (and the healed-store notice of hole 6): the runs folder counts toward the disk quotas.

Each import of a small bundle with a zeroed 480 MB checkpoint used to add 458 MB of disk with no quota; a
139 MB metrics CSV added 220 MB to the store; checkpoints of a damaged store stayed on disk for good.
"""

import os
import time
from pathlib import Path

import pytest

from lib.app import sessions
from lib.runs.store import NOTICE_S, RunStore
from lib.settings import Settings

SESSION = "ab" * 16
DEPLOYED = Settings(mode="deployed", max_session_mb=2, max_disk_mb=5)


def run_with_checkpoint(store: RunStore, owner: str | None, mb: float) -> str:
    run_id = store.create_run({"model": "mlp"}, owner=owner)
    store.finish(run_id, "completed")
    folder = store.files.folder(run_id)
    folder.mkdir(parents=True)
    (folder / "last.pt").write_bytes(os.urandom(int(mb * 2**20)))
    return run_id


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs")


def test_a_sessions_checkpoints_count_toward_its_quota(store):
    assert sessions.disk_room(SESSION, DEPLOYED, store) == 2 * 2**20
    run_with_checkpoint(store, SESSION, 1.5)
    run_with_checkpoint(store, "someone else", 0.25)  # theirs counts toward the server's quota only
    assert sessions.disk_room(SESSION, DEPLOYED, store) == pytest.approx(0.5 * 2**20, abs=2**16)
    run_with_checkpoint(store, SESSION, 0.6)
    with pytest.raises(ValueError, match="delete runs on the Runs page"):
        sessions.check_room_for_runs(SESSION, DEPLOYED, store)


def test_every_runs_files_count_toward_the_servers_quota(store):
    for n in range(4):
        run_with_checkpoint(store, f"visitor {n}", 1.3)  # 5.2 MB of other visitors' checkpoints
    assert sessions.disk_room(SESSION, DEPLOYED, store) == 0
    with pytest.raises(ValueError, match="5 MB for everyone"):
        sessions.check_room_for_runs(SESSION, DEPLOYED, store)


def test_a_damaged_stores_checkpoints_are_reclaimed_and_its_notice_does_not_last(store):
    run_with_checkpoint(store, None, 0.1)
    store.path.write_bytes(b"not a database" * 100)
    Path(f"{store.path}-wal").unlink(missing_ok=True)
    assert store.list_runs() == []
    assert not (store.root / "checkpoints").exists()  # no run names them any more: their disk is back
    assert "damaged" in store.recent_notice()
    assert store.recent_notice(now=time.time() + NOTICE_S + 1) == ""  # not every visitor, for good

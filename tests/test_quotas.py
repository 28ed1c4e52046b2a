"""Disk quotas per session and for everyone, uploads that replace each other and vanish when refused,
and a sweep that never deletes what a running trainer reads. Small limits, so each test takes seconds."""

import os
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from lib.app import sessions
from lib.runs.store import RunStore
from tests.helpers import png_bytes, zip_bytes
from tests.test_deployed import SIDEBAR_ONLY

PETS = {f"pets/{c}/{i}.png": png_bytes(i) for c in ("cat", "dog") for i in range(3)}


def _app(monkeypatch, **limits: int) -> AppTest:
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    for name, value in limits.items():
        monkeypatch.setenv(f"TORCHSCOPE_{name.upper()}", str(value))
    at = AppTest.from_string(SIDEBAR_ONLY, default_timeout=120)
    at.session_state["source_kind"] = "upload"
    at.run()
    return at


def _upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader(key="source_upload").set_value((name, data, "application/zip"))
    at.run()
    assert not at.exception


def _deflated(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _session_files(at: AppTest) -> list[str]:
    folder = sessions.session_dir(at.session_state["session_id"])
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != sessions.HEARTBEAT)


def test_extraction_stops_at_the_session_disk_quota_and_leaves_nothing(monkeypatch):
    at = _app(monkeypatch, max_session_mb=1)
    # 2 MiB of zeros compress to a few KB: refused by what it would unpack to, before writing it.
    _upload(at, "big.zip", _deflated({**PETS, "pets/cat/pad.png": bytes(2 * 2**20)}))
    assert "unpacks to 2.0 MiB, over the limit of 1.0 MiB" in at.session_state["source_error"]
    assert at.session_state["source"].kind == "sample"
    assert _session_files(at) == []  # the refused upload is deleted at once


def test_the_servers_total_disk_quota_counts_other_sessions(monkeypatch):
    other = sessions.session_dir("9" * 32) / "uploads"
    other.mkdir(parents=True, exist_ok=True)
    (other / "x.zip").write_bytes(bytes(2**20))  # someone else already uses the whole 1 MB
    try:
        at = _app(monkeypatch, max_disk_mb=1)
        _upload(at, "pets.zip", zip_bytes(PETS))
        assert "only 0.0 MB is left" in at.session_state["source_error"]
        assert _session_files(at) == []  # not written at all
    finally:
        sessions.remove_session("9" * 32)


def test_a_new_upload_replaces_the_previous_one(monkeypatch):
    at = _app(monkeypatch)
    _upload(at, "first.zip", zip_bytes(PETS))
    assert at.session_state["source_error"] is None
    first = _session_files(at)
    _upload(
        at, "second.zip", zip_bytes({f"toys/{c}/{i}.png": png_bytes(10 + i) for c in ("car", "ball") for i in range(2)})
    )
    assert at.session_state["source_error"] is None
    files = _session_files(at)
    assert any(f.endswith("-first.zip") for f in first)
    assert not any("first" in f for f in files) and any(f.endswith("-second.zip") for f in files)
    assert sum(f.endswith(".png") for f in files) == 4  # only the second archive's images remain


def test_a_refused_upload_is_deleted_at_once_and_a_long_name_is_fine(monkeypatch):
    at = _app(monkeypatch)
    _upload(at, "evil.zip", zip_bytes({"../escape/a.png": b"x"}))
    assert "'..' path component" in at.session_state["source_error"]
    assert _session_files(at) == []  # deleted at once, not when the session goes idle
    _upload(at, "n" * 240 + ".zip", zip_bytes(PETS))  # with its hash prefix, over 255 bytes: cut, not refused
    assert at.session_state["source_error"] is None and at.session_state["source"].kind == "upload"


def test_the_sweep_keeps_files_a_running_trainer_reads(monkeypatch, tmp_path):
    from lib.app import cache

    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    store = RunStore(tmp_path / "runs")
    idle = "7" * 32
    sessions.touch(idle)
    run_id = store.create_run({"model": "mlp"}, owner=idle, pid=os.getpid())  # alive: still training
    past = time.time() - 10 * 3600
    os.utime(sessions.session_dir(idle) / sessions.HEARTBEAT, (past, past))
    monkeypatch.setattr(cache, "_last_sweep", [0.0])
    assert cache.sweep_idle_sessions("8" * 32) == []  # kept while its trainer reads them
    assert store.stop_requested(run_id) and (sessions.session_dir(idle).parent / idle).is_dir()
    store.finish(run_id, "stopped")
    monkeypatch.setattr(cache, "_last_sweep", [0.0])
    assert cache.sweep_idle_sessions("8" * 32) == [idle]  # once it stopped, the next sweep removes them


def test_a_tab_watching_a_run_keeps_its_session_alive(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    watcher = "6" * 32
    RunStore(tmp_path / "runs").create_run({"model": "mlp", "epochs": 1}, owner=watcher, pid=os.getpid())
    sessions.touch(watcher)
    beat = sessions.session_dir(watcher) / sessions.HEARTBEAT
    past = time.time() - 3600
    os.utime(beat, (past, past))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "train.py"), default_timeout=120)
    at.session_state["session_id"] = watcher
    at.run()  # the polling fragment draws once under AppTest (run_every never fires there)
    assert not at.exception
    assert time.time() - beat.stat().st_mtime < 60 and sessions.idle_sessions(1800) == []

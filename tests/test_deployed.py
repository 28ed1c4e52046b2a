"""Deployed mode: settings, refusals of server paths, per-session folders, limits."""

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.app import sessions
from lib.app.text import plain
from lib.data.sources import Source, check_dataset_limits, resolve_root, source_from_params
from lib.settings import DEPLOYED_DEFAULTS, load_settings
from tests.helpers import png_bytes, zip_bytes

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def test_mode_from_env_or_secrets_env_wins():
    assert load_settings({}, env={}).mode == "local"
    assert load_settings({"mode": "deployed"}, env={}).deployed
    s = load_settings(
        {"mode": "deployed", "max_epochs": 3}, env={"TORCHSCOPE_MODE": "local", "TORCHSCOPE_MAX_EPOCHS": "7"}
    )
    assert s.mode == "local" and s.max_epochs == 7
    assert load_settings({}, env={"TORCHSCOPE_MODE": "deployed"}).max_epochs == DEPLOYED_DEFAULTS["max_epochs"]


@pytest.mark.parametrize(
    "secrets, env, message",
    [
        ({"mode": "cloud"}, {}, "Unknown mode"),
        ({}, {"TORCHSCOPE_MAX_EPOCHS": "ten"}, "whole number"),
        ({}, {"TORCHSCOPE_MAX_UPLOAD_MB": "0"}, "positive"),
    ],
)
def test_bad_settings_are_one_sentence(secrets, env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(secrets, env=env)


def test_deployed_refuses_server_paths(tmp_path):
    deployed = load_settings({}, env={"TORCHSCOPE_MODE": "deployed"})
    for kind in ("folder", "zip"):
        with pytest.raises(ValueError, match="does not open server paths"):
            resolve_root(Source(kind, str(tmp_path)), deployed)
        source, why = source_from_params({"source": kind, "path": "/etc"}, deployed)
        assert source == Source("sample") and "server paths" in why
    # A link's built-in root is ignored: only the configured server folder counts.
    source, _ = source_from_params({"source": "builtin", "name": "MNIST", "root": "/etc"}, deployed)
    assert source.root == ""
    with pytest.raises(ValueError, match="no built-in datasets"):
        resolve_root(source, deployed)


def test_dataset_limits():
    s = load_settings({"max_archive_files": 10, "max_total_pixels": 1000}, env={})
    check_dataset_limits(10, 1000, s)
    with pytest.raises(ValueError, match="11 images"):
        check_dataset_limits(11, 10, s)
    with pytest.raises(ValueError, match="1,001 pixels"):
        check_dataset_limits(1, 1001, s)


def test_idle_sessions_are_found_and_removed():
    old, new = "a" * 32, "b" * 32
    sessions.touch(old)
    sessions.touch(new)
    past = time.time() - 3600
    os.utime(sessions.session_dir(old) / sessions.HEARTBEAT, (past, past))
    assert sessions.idle_sessions(1800) == [old]
    sessions.remove_session(old)
    assert not (sessions.session_dir(new).parent / old).exists()
    with pytest.raises(ValueError):
        sessions.session_dir("../etc")


def test_deployed_app_has_no_path_input(monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(source="folder", path="/etc")
    at.run()
    assert not at.exception
    assert at.radio(key="source_kind").options == ["Built-in sample", "Upload a .zip"]
    assert not at.text_input
    assert "server paths" in at.sidebar.error[0].value
    assert {m.label: m.value for m in at.metric}["Images"] == "640"


def test_two_sessions_get_their_own_ids_and_folders():
    a, b = (AppTest.from_file(APP, default_timeout=120) for _ in range(2))
    a.run()
    b.run()
    ida, idb = a.session_state["session_id"], b.session_state["session_id"]
    assert ida != idb
    assert sessions.session_dir(ida) != sessions.session_dir(idb)


def test_upload_source_must_live_in_its_session(tmp_path):
    local = load_settings({}, env={})
    mine = sessions.session_dir("c" * 32)
    with pytest.raises(ValueError, match="another session"):
        resolve_root(Source("upload", str(tmp_path / "x.zip")), local, mine)
    with pytest.raises(ValueError, match="another session"):
        resolve_root(Source("upload", str(mine / ".." / ("d" * 32) / "x.zip")), local, mine)


def _upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader(key="source_upload").set_value((name, data, "application/zip"))
    at.run()
    assert not at.exception


SIDEBAR_ONLY = """
from streamlit_app import init_session, sidebar
init_session()
sidebar()
"""


def _deployed_upload_app(monkeypatch) -> AppTest:
    """The router's sidebar on its own: AppTest keeps a st.navigation app's sidebar for one run only."""
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = AppTest.from_string(SIDEBAR_ONLY, default_timeout=120)
    at.session_state["source_kind"] = "upload"
    at.run()
    return at


def _images(at: AppTest) -> int:
    from lib.data.index import build_index

    return build_index(at.session_state["dataset_root"]).num_images


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../escape/a.png": b"x"}, ".."),
        ({"/etc/passwd_a.png": b"x"}, "absolute"),
        ({"not an archive": None}, "not a .zip"),
    ],
)
def test_hostile_uploads_are_refused_through_the_upload_box(monkeypatch, members, message):
    at = _deployed_upload_app(monkeypatch)
    data = b"plain text, not a zip" if None in members.values() else zip_bytes(members)
    _upload(at, "evil.zip", data)
    assert message in at.session_state["source_error"]
    assert at.session_state["source"].kind == "sample"  # what was open stays open
    assert at.sidebar.error[0].value == plain(at.session_state["source_error"])  # shown as text
    assert _images(at) == 640


def test_upload_opens_in_its_own_session_only(monkeypatch):
    a = _deployed_upload_app(monkeypatch)
    b = AppTest.from_string(SIDEBAR_ONLY, default_timeout=120)
    b.run()
    _upload(a, "pets.zip", zip_bytes({f"pets/{c}/{i}.png": png_bytes(i) for c in ("cat", "dog") for i in range(3)}))
    assert a.session_state["source_error"] is None
    root = Path(a.session_state["dataset_root"])
    assert root.is_relative_to(sessions.session_dir(a.session_state["session_id"]))
    assert _images(a) == 6
    b.run()
    assert b.session_state["source"].kind == "sample"
    assert _images(b) == 640
    # B cannot open A's upload even by naming its path.
    with pytest.raises(ValueError, match="another session"):
        resolve_root(
            Source("upload", a.session_state["source"].value),
            load_settings({}, env={}),
            sessions.session_dir(b.session_state["session_id"]),
        )


def test_idle_session_sweep_removes_its_runs_and_uploads(monkeypatch, tmp_path):
    from lib.app import cache
    from lib.runs.store import RunStore

    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    store = RunStore(tmp_path / "runs")
    idle, active = "e" * 32, "f" * 32
    kept = store.create_run({"model": "linear"}, owner=active)
    gone = store.create_run({"model": "linear"}, owner=idle)
    running = store.create_run({"model": "linear"}, owner=idle)
    store.record_step(gone, 1, 0, 1.0, 0.1, 10.0)
    store.finish(gone, "completed")
    store.finish(kept, "completed")
    store.update_run(running, pid=os.getpid())  # alive: still running
    for sid in (idle, active):
        sessions.touch(sid)
    past = time.time() - 10 * 3600
    os.utime(sessions.session_dir(idle) / sessions.HEARTBEAT, (past, past))
    monkeypatch.setattr(cache, "_last_sweep", [0.0])
    assert cache.sweep_idle_sessions(active) == []  # a trainer still reads its files: they stay for now
    assert store.get_run(gone) is None and store.steps(gone).empty
    assert store.get_run(kept) is not None
    assert store.stop_requested(running)  # a running trainer is asked to stop, then swept later
    store.finish(running, "stopped")
    monkeypatch.setattr(cache, "_last_sweep", [0.0])
    assert cache.sweep_idle_sessions(active) == [idle]
    assert not (sessions.session_dir(active).parent / idle).exists()


def test_builtin_download_offline_is_one_sentence_in_the_sidebar(monkeypatch, tmp_path):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    at = AppTest.from_string(SIDEBAR_ONLY, default_timeout=120)
    at.session_state["source_kind"] = "builtin"
    at.session_state["builtin_name"] = "MNIST"
    at.session_state["builtin_root"] = str(tmp_path)
    at.run()
    at.button(key="builtin_download").click().run()
    assert not at.exception
    assert "Could not download MNIST" in at.session_state["source_error"]
    assert at.session_state["source"].kind == "sample"

"""Per-visitor folders: each browser session keeps its uploads under its own id, removed when idle; an
upload's bytes leave server memory once they are on disk."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from lib.data.folders import disk_left
from lib.settings import cache_dir

_ID = re.compile(r"^[0-9a-f]{32}$")
HEARTBEAT = ".last_seen"


def session_dir(session_id: str) -> Path:
    """The folder of one session (created on demand).

    Raises:
        ValueError: for an id that is not a 32-character hex string (never a path).
    """
    if not _ID.match(session_id):
        raise ValueError("Invalid session id; reload the page to start a new session.")
    path = cache_dir() / "sessions" / session_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def visitor_id(session_id: str, ip: str | None, user_agent: str | None) -> str:
    """Who is visiting, as far as a server without accounts can tell: a hash of the address and browser.

    Tabs of one browser share it, so per-visitor limits hold across tabs. It cannot tell apart people
    behind one address with the same browser (they share limits), and one person with two browsers or
    addresses counts twice. Without an address (a test harness), each session is its own visitor.
    """
    if not ip:
        return f"session:{session_id}"
    return "visitor:" + hashlib.sha256(f"{ip}\0{user_agent or ''}".encode()).hexdigest()[:16]


def touch(session_id: str) -> None:
    """Record that the session is alive now (an id that cannot name a folder has none to keep alive)."""
    if _ID.match(session_id):
        (session_dir(session_id) / HEARTBEAT).touch()


def idle_sessions(max_idle_s: float, now: float | None = None) -> list[str]:
    """Ids of sessions not seen for longer than max_idle_s."""
    base = cache_dir() / "sessions"
    if not base.is_dir():
        return []
    now = time.time() if now is None else now
    idle = []
    for entry in os.scandir(base):
        beat = Path(entry.path) / HEARTBEAT
        seen = beat.stat().st_mtime if beat.exists() else entry.stat().st_mtime
        if _ID.match(entry.name) and now - seen > max_idle_s:
            idle.append(entry.name)
    return idle


def runs_bytes(store, owner: str | None) -> int:
    """Disk a session's runs hold: their checkpoints and predictions (deployed mode: the runs it owns)."""
    return store.files.usage([r.id for r in store.list_runs(owner)]) if owner else 0


def disk_room(session_id: str, settings, store) -> int:
    """Bytes this session may still write, its uploads and its runs together (lib.data.folders.disk_left)."""
    owner = session_id if settings.deployed else None
    used = runs_bytes(store, owner)
    return disk_left(session_dir(session_id), settings.max_session_mb, settings.max_disk_mb, also_used=used)


def check_room_for_runs(session_id: str, settings, store) -> None:
    """Raises ValueError when this session's disk quota (or the server's) has no room left for a run's
    checkpoints."""
    if disk_room(session_id, settings, store) <= 0:
        raise ValueError(
            f"Your uploads and runs use all the disk this session may (up to {settings.max_session_mb:,} MB, "
            f"{settings.max_disk_mb:,} MB for everyone); delete runs on the Runs page, then start again."
        )


def clear_uploads(session_id: str) -> None:
    """Delete a session's uploaded archives and their extracted files (a new upload replaces them)."""
    if _ID.match(session_id):
        for name in ("uploads", "archives"):
            shutil.rmtree(cache_dir() / "sessions" / session_id / name, ignore_errors=True)


def remove_session(session_id: str) -> None:
    """Delete a session's uploads and extracted archives."""
    if _ID.match(session_id):
        shutil.rmtree(cache_dir() / "sessions" / session_id, ignore_errors=True)


def release_upload(upload) -> None:
    """Drop an uploaded file's bytes from the server's memory, once what the page needs of it is on disk.

    Streamlit holds every upload in memory until its session ends or the visitor removes it from the
    widget, so an archive already extracted to disk would stay in RAM for as long as the tab is open. The
    widget reads as empty from the next run on (the page keeps what it stored: the opened source, the
    imported runs). Outside a running server, or with another upload manager, nothing happens.
    """
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and isinstance(ctx.uploaded_file_mgr, MemoryUploadedFileManager):
        ctx.uploaded_file_mgr.remove_file(session_id=ctx.session_id, file_id=upload.file_id)

"""Publishing a folder atomically, so concurrent sessions never see half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_folder(final: Path, build: Callable[[Path], None], marker: str) -> None:
    """Run `build(tmp)` in a temporary folder beside `final`, then rename it into place.

    `build` must write the file `marker` last: a folder without it is unfinished. When another
    caller published `final` first, theirs is kept; a stale unfinished `final` is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another caller won the race, or a stale unfinished folder is in the way
            if not (final / marker).is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def disk_usage(path: Path) -> int:
    """Bytes of the files under path (links not followed; a folder that vanishes midway counts as empty)."""
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def disk_left(session_folder: Path, max_session_mb: int, max_disk_mb: int, *, also_used: int = 0) -> int:
    """Bytes a session may still write: the smaller of what is left of its own quota and of the server's,
    where the server's counts every session's files, extracted archives, exported built-ins and the runs
    folder (checkpoints, predictions, the store). `also_used`: what the session holds outside its folder
    (its runs' files, lib.app.sessions.runs_bytes)."""
    from lib.settings import cache_dir, runs_dir

    cache = cache_dir()
    everyone = sum(disk_usage(cache / name) for name in ("sessions", "archives", "builtins")) + disk_usage(runs_dir())
    mine = disk_usage(session_folder) + also_used
    return max(0, min(max_session_mb * 2**20 - mine, max_disk_mb * 2**20 - everyone))


def check_disk(needed: int, session_folder: Path, max_session_mb: int, max_disk_mb: int, *, also_used: int = 0) -> None:
    """Refuse to write `needed` bytes for a session over its disk quota or the server's.

    Raises:
        ValueError: saying how much room is left and what to do.
    """
    left = disk_left(session_folder, max_session_mb, max_disk_mb, also_used=also_used)
    if needed > left:
        raise ValueError(
            f"That needs {needed / 2**20:,.1f} MB of disk but only {left / 2**20:,.1f} MB is left for this session "
            f"(up to {max_session_mb:,} MB each, {max_disk_mb:,} MB for everyone); use a smaller archive."
        )

"""Whether the process behind a running run or sweep still works: its pid on this host, or a recent
heartbeat in the store when it runs on another host sharing the runs folder."""

from __future__ import annotations

import os
import socket
import time

STALE_AFTER_S = 300.0  # heartbeat age after which another host's run counts as interrupted


def trainer_alive(pid: int | None, host: str | None, heartbeat: float | None) -> bool:
    """Whether a running run's trainer may still be working: its pid lives (same host) or it beat recently."""
    if pid is not None and host == socket.gethostname():
        return pid_alive(pid)
    return heartbeat is not None and time.time() - heartbeat < STALE_AFTER_S


def pid_alive(pid: int) -> bool:
    """True when process pid exists and is not a zombie (a killed child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): the kill check is all we have

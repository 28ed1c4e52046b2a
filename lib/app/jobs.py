"""A background job: long work that runs outside a Streamlit script run and reports progress.

When the process exits (the server stopped, a test session ended) running jobs are stopped at their next
progress report and waited for: a daemon thread left inside torch's C++ code as the interpreter finalizes
aborts the whole process ("terminate called without an active exception", exit status 134).
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

EXIT_WAIT_S = 60.0  # the longest the process waits at exit for its jobs to reach a progress report

_closing = threading.Event()
_running: set[threading.Thread] = set()
_running_lock = threading.Lock()


class JobCancelled(Exception):
    """Raised inside a job's progress callback once the process is exiting."""


class BackgroundJob:
    """Run `fn(progress)` on a daemon thread; read `.fraction`, `.done`, `.result`, `.error`.

    `fn` receives a `progress(done, total)` callback. The job never raises: an exception is kept
    as `.error` (its message) so the page can say it in words.
    """

    def __init__(self, fn: Callable[[Callable[[int, int], None]], Any], name: str = "torchscope-job"):
        self._fn = fn
        self.done_count = 0
        self.total = 0
        self.result: Any = None
        self.error: str | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        with _running_lock:
            _running.add(self._thread)
        self._thread.start()

    def _progress(self, done: int, total: int) -> None:
        if _closing.is_set():
            raise JobCancelled("The app is closing.")
        self.done_count, self.total = done, total

    def _run(self) -> None:
        try:
            self.result = self._fn(self._progress)
        except Exception as e:  # noqa: BLE001 - reported to the user as text
            self.error = str(e) or type(e).__name__
        finally:
            self._finished.set()
            with _running_lock:
                _running.discard(self._thread)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def fraction(self) -> float:
        return 1.0 if self.done else (self.done_count / self.total if self.total else 0.0)

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


@atexit.register
def stop_jobs(timeout: float = EXIT_WAIT_S) -> None:
    """Stop every running job at its next progress report and wait for it (at most `timeout` s in all)."""
    _closing.set()
    deadline = time.monotonic() + timeout
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))

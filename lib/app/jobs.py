"""A background job: long work that runs outside a Streamlit script run and reports progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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
        self._thread.start()

    def _progress(self, done: int, total: int) -> None:
        self.done_count, self.total = done, total

    def _run(self) -> None:
        try:
            self.result = self._fn(self._progress)
        except Exception as e:  # noqa: BLE001 - reported to the user as text
            self.error = str(e) or type(e).__name__
        finally:
            self._finished.set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def fraction(self) -> float:
        return 1.0 if self.done else (self.done_count / self.total if self.total else 0.0)

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

"""What ends a run from outside its loop: a stop that says why, the per-run time limit, the app server's death.

The engine checks `stop.is_set()` after every batch and reports a StopEvent's `reason` and `status` as the
run's message and final status. `python -m lib train` arms both watches for its one run; the sweep driver
watches its server once for the whole sweep and gives each run a time limit of its own (`RunStop`).
"""

from __future__ import annotations

import os
import sys
import threading

from lib.runs.status import Status
from lib.runs.store import RunStore


class StopEvent(threading.Event):
    """A stop request with its reason (the engine reports `reason` as the run's message when set)."""

    reason = ""
    status = Status.STOPPED  # INTERRUPTED when its server went away

    def stop(self, reason: str, status: Status = Status.STOPPED) -> None:
        self.reason, self.status = reason, status
        self.set()


class RunStop(StopEvent):
    """One run's stop inside a longer job (a sweep): set by the run's own time limit, or by `outer`, the
    job's stop, whose reason and status it then takes."""

    def __init__(self, outer: threading.Event):
        super().__init__()
        self.outer = outer

    def is_set(self) -> bool:
        if not super().is_set() and self.outer.is_set():
            self.stop(getattr(self.outer, "reason", ""), getattr(self.outer, "status", Status.STOPPED))
        return super().is_set()


def time_limit(store: RunStore, run_id: str, stop: StopEvent, minutes: float) -> threading.Timer:
    """A started timer that stops the run after `minutes`, as `stopped` with the reason; cancel it when the
    run ends first."""

    def time_up() -> None:
        stop.stop(f"Stopped after {minutes:g} minutes, this server's limit per run; the metrics so far are kept.")
        store.request_stop(run_id)  # also ends a run that is still decoding its images

    timer = threading.Timer(minutes * 60, time_up)
    timer.daemon = True
    timer.start()
    return timer


class ParentWatch(threading.Timer):
    """Checks every second that this process's parent is still `parent`; stops the run as `interrupted`
    when it is not. Started at once; `cancel()` ends it.

    The parent's pid comes from the command line, so a parent that exits before the trainer started is
    seen too. A Linux parent-death signal would fire when the starting *thread* ends, and Streamlit
    starts runs from a script thread that ends at once; polling the parent pid works everywhere.
    """

    def __init__(self, parent: int, stop: StopEvent):
        super().__init__(1.0, lambda: None)
        self.parent, self.stop_event = parent, stop
        self.daemon = True
        self.start()

    def run(self) -> None:
        while True:
            if os.getppid() != self.parent:
                self.stop_event.stop(
                    "The app's server stopped while the run trained; metrics up to then are kept.", Status.INTERRUPTED
                )
                return
            if self.finished.wait(self.interval):
                return


class ExitStop(StopEvent):
    """The stop of a process that keeps nothing (the learning-rate finder): it says why on stderr and exits
    at once, whatever the process is doing (decoding images included)."""

    def stop(self, reason: str, status: Status = Status.STOPPED) -> None:
        print(reason, file=sys.stderr, flush=True)
        os._exit(4)


def exit_watches(parent: int | None, minutes: float | None) -> list[threading.Timer]:
    """Started watches that end this process when `parent` exits or after `minutes` (either may be None)."""
    stop, watches = ExitStop(), []
    if minutes:
        reason = f"Stopped after {minutes:g} minutes, this server's limit per run; start it again with fewer batches."
        watches.append(threading.Timer(minutes * 60, stop.stop, args=(reason,)))
        watches[-1].daemon = True
        watches[-1].start()
    if parent is not None:
        watches.append(ParentWatch(parent, stop))
    return watches

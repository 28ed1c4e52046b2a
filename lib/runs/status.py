"""The one vocabulary of a run's status, shared by the store, the engine, the CLI and the pages."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A run's status. A StrEnum, so it is stored in SQLite and printed as its plain value."""

    RUNNING = "running"
    COMPLETED = "completed"  # every epoch ran
    STOPPED = "stopped"  # a stop was asked for (Stop button, SIGTERM, a time limit); metrics kept
    DIVERGED = "diverged"  # the loss became non-finite; metrics kept
    FAILED = "failed"  # an error after the run started, with its reason
    INTERRUPTED = "interrupted"  # the trainer vanished without a final status (killed, crashed, server gone)


FINAL_STATUSES = tuple(s for s in Status if s is not Status.RUNNING)

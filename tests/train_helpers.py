"""Shared by the training tests: wait for a state with a bounded deadline (never a fixed sleep)."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SESSION_ID = "5" * 32  # a session id as the app makes them (32 hex digits): Start refuses anything else


def wait_for(probe: Callable[[], T], timeout: float = 120.0, interval: float = 0.05) -> T:
    """Call probe until it returns something truthy and return that; fail after timeout seconds.

    The short pause between probes only keeps the poll from starving the trainer of CPU."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"state not reached within {timeout} s")


def wait_for_steps(store, proc, steps: int = 1) -> str:
    """The id of the first run in `store` once it has `steps` steps recorded; fails if `proc` ends first."""

    def run_with_steps() -> str | None:
        assert proc.poll() is None, f"the trainer ended (exit {proc.returncode}) before {steps} steps"
        runs = store.list_runs()
        return runs[0].id if runs and len(store.steps(runs[0].id)) >= steps else None

    return wait_for(run_with_steps)

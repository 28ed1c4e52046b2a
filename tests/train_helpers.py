"""Shared by the training tests: wait for a state with a bounded deadline (never a fixed sleep)."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


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

"""The trainer process's load, sampled every few seconds into the store's `machine` table.

CPU share is the process's CPU time (os.times: user + system, all threads) over the wall time since the
previous sample, in percent of one core (400 = four cores busy), as `top` and psutil count it. Resident
memory is /proc/self/statm's resident pages (Linux; elsewhere the peak from getrusage). On CUDA, the
GPU's utilisation (torch.cuda.utilization, from NVML; None when NVML is missing) and the memory torch
holds on it (torch.cuda.memory_reserved). psutil is not a dependency: these need nothing beyond the
standard library.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

SAMPLE_S = 3.0  # seconds between samples: a few hundred rows for an hour-long run


class CpuClock:
    """Process CPU percent since the previous call (the first call: since the clock was made)."""

    def __init__(self):
        self.cpu, self.wall = _cpu_seconds(), time.monotonic()

    def percent(self) -> float:
        cpu, wall = _cpu_seconds(), time.monotonic()
        share = 100.0 * (cpu - self.cpu) / max(wall - self.wall, 1e-9)
        self.cpu, self.wall = cpu, wall
        return share


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux: now; elsewhere: the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def gpu_figures() -> tuple[float | None, float | None]:
    """(GPU utilisation %, MiB torch reserved on it), or Nones off CUDA; torch only if already imported."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None, None
    try:
        util = float(torch.cuda.utilization())
    except Exception:  # noqa: BLE001 - NVML missing or unsupported: memory is still worth showing
        util = None
    return util, torch.cuda.memory_reserved() / 2**20


class Sampler:
    """A daemon thread writing one (time, step, cpu %, RSS MiB, GPU %, GPU MiB) row every `every` s to `write`."""

    def __init__(self, write: Callable[[list[tuple]], None], step: Callable[[], int], every: float = SAMPLE_S):
        self.write, self.step, self.every = write, step, every
        self.clock, self.done = CpuClock(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="torchscope-machine", daemon=True)

    def start(self) -> Sampler:
        self.thread.start()
        return self

    def sample(self) -> tuple:
        return (time.time(), self.step(), self.clock.percent(), rss_mb(), *gpu_figures())

    def _run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.write([self.sample()])
            except Exception:  # noqa: BLE001 - the store is gone or read-only: the run itself says so
                return

    def stop(self) -> None:
        """End the thread, then write one last row: a run shorter than `every` still has its figures."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        try:
            self.write([self.sample()])
        except Exception:  # noqa: BLE001 - as in _run
            pass


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system

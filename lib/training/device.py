"""Where a trainer runs: the device a config names, and the CPU threads it may use."""

from __future__ import annotations

import math
import os
import time

import torch

from lib.settings import default_threads


def resolve_device(name: str) -> torch.device:
    """`auto` picks the accelerator torch finds (CUDA, MPS, XPU, ...), else the CPU.

    Raises:
        ValueError: when the named device is not available here.
    """
    found = accelerator()
    if name == "auto":
        return found or torch.device("cpu")
    if name != "cpu" and (found is None or found.type != name):
        raise ValueError(f"Device {name} is not available on this machine; choose auto or cpu.")
    return torch.device(name)


def accelerator() -> torch.device | None:
    """The accelerator this process would use, or None: torch.accelerator where torch offers it
    (2.6 and later), else CUDA, then MPS."""
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "current_accelerator"):
        return api.current_accelerator() if api.is_available() else None
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps") if mps is not None and mps.is_available() else None


def idle_cores() -> int:
    """Torch intra-op threads for a trainer: the cores this process may use (lib.settings.default_threads)
    that other work leaves free, at least 1.

    A thread beyond those waits for a time slice at every op, so the whole step waits for it: with 2 cores
    at load 14, two threads make `linear` and `cnn` steps 5 to 15 times slower than one. Other work is the
    1-minute load average, or what runs now when that is less: the average trails by a minute, so a command
    started right after another (a benchmark's pair, a user's second run) saw the first's load and ran on
    half the cores of a 2-core machine.
    """
    cores = default_threads()
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # not offered here (Windows has no getloadavg)
        return cores
    now = running_elsewhere()
    return max(1, min(cores, cores - math.floor(busy if now is None else min(busy, now))))


def running_elsewhere(samples: int = 5, interval_s: float = 0.01) -> float | None:
    """How many threads of other processes are runnable now: Linux's procs_running less the runnable threads
    of this process and its children (a store watcher, decode workers), the median of a few samples
    `interval_s` apart; None where /proc is not there."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                running = procs_running(f.read())
            counts.append(max(0, running - _own_running()))
        except (OSError, ValueError):
            return None
        if i < samples - 1:
            time.sleep(interval_s)
    return float(sorted(counts)[len(counts) // 2])


def _own_running() -> int:
    """Runnable threads of this process and its direct children (the reading thread included)."""
    pids, count = [os.getpid()], 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:  # a thread that ended, or a kernel without the children file
            continue
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                    count += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except (OSError, IndexError):
                continue
    return max(count, 1)


def procs_running(stat: str) -> int:
    """The `procs_running` figure of a /proc/stat text (threads runnable at that instant, the reader included)."""
    for line in stat.splitlines():
        if line.startswith("procs_running "):
            return int(line.split()[1])
    raise ValueError("no procs_running line")

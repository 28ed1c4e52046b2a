"""Where a trainer runs: the device a config names, and the CPU threads it may use."""

from __future__ import annotations

import math
import os

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
    that the 1-minute load average leaves free, at least 1.

    A thread beyond those waits for a time slice at every op, so the whole step waits for it: with 2 cores
    at load 14, two threads make `linear` and `cnn` steps 5 to 15 times slower than one.
    """
    cores = default_threads()
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # not offered here (Windows has no getloadavg)
        return cores
    return max(1, min(cores, cores - math.floor(busy)))

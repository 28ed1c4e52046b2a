"""Starting, executing and stopping runs outside the Streamlit script run.

The app starts each run as a subprocess, `python -m lib train ROOT --run-id ID --runs-dir DIR`, not as
a thread. Chosen deliberately: neither survives more than the other here (a server restart ends both,
and the run store turns either into `interrupted`), but a subprocess isolates what a thread cannot:
the GIL (the page's script runs stay responsive while the trainer loops in Python), torch's global
thread count and memory (a decoded dataset is freed when the run ends), and crashes (a segfault or the
OOM killer ends one run, not the server; the reaper records it). It also runs the exact code path of
the headless CLI. The price is a second or two of start-up to import torch. Stop works through the
store's stop column, which the trainer reads after a batch at least every 0.2 s, from any process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.settings import Settings, load_settings
from lib.training.config import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_start_lock = threading.Lock()  # one check-then-start at a time within this server


def check_limits(config: TrainConfig, settings: Settings) -> None:
    """Raises ValueError when config asks for more than this server allows (deployed mode is stricter)."""
    if config.epochs > settings.max_epochs:
        raise ValueError(f"This server trains at most {settings.max_epochs} epochs; lower epochs.")
    if config.image_size > settings.max_image_size:
        raise ValueError(f"This server trains at most {settings.max_image_size} px images; lower the image size.")


def check_capacity(store: RunStore, owner: str | None, settings: Settings) -> None:
    """Raises ValueError when owner already has a run training, or the server is at its global cap."""
    mine = store.running(owner) if owner is not None else []
    if len(mine) >= settings.max_runs_per_session:
        raise ValueError(
            f"Run {mine[0].name} is still training; stop it or wait for it to finish before starting another."
        )
    here = [r for r in store.running() if r.host == socket.gethostname()]
    if len(here) >= settings.max_runs_global:
        raise ValueError(
            f"{len(here)} runs are already training on this server (the limit is "
            f"{settings.max_runs_global}); try again when one finishes."
        )


def start_run(
    config: TrainConfig, root: str | Path, store: RunStore, owner: str | None, *, settings: Settings | None = None
) -> str:
    """Start a trainer subprocess for config on the ImageFolder at root; return the run id at once.

    Raises:
        ValueError: when owner already has a run training, the server is at its cap on concurrent runs,
            or config exceeds the server's limits.
    """
    settings = settings or load_settings()
    check_limits(config, settings)
    with _start_lock:
        check_capacity(store, owner, settings)
        run_id = store.create_run(config.to_dict(), root=str(root), owner=owner, name=config.name)
        log = store.root / "logs" / f"{run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lib", "train", str(root), "--run-id", run_id, "--runs-dir", str(store.root)]
        if settings.deployed:  # concurrent trainers share the cores, and leave the server its share
            cmd += ["--threads", str(trainer_threads(settings))]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        store.update_run(run_id, pid=proc.pid)
    threading.Thread(target=_reap, args=(proc, store, run_id, log), daemon=True, name=f"reap-{run_id}").start()
    return run_id


def trainer_threads(settings: Settings, cores: int | None = None) -> int:
    """Torch threads for one trainer when up to max_runs_global train at once beside the server."""
    return max(1, (cores or os.cpu_count() or 1) // settings.max_runs_global)


def stop_run(run_id: str, store: RunStore) -> None:
    """Ask a run to stop; its trainer ends after the current batch with status `stopped`."""
    store.request_stop(run_id)


def _reap(proc: subprocess.Popen, store: RunStore, run_id: str, log: Path) -> None:
    """Wait for the trainer (no zombie left) and record why, if it died without writing a final status."""
    code = proc.wait()
    record = store.get_run(run_id)
    if record is None or record.status != Status.RUNNING:
        return
    if code < 0:
        store.finish(
            run_id,
            Status.INTERRUPTED,
            f"The trainer was killed by {signal.Signals(-code).name}; metrics up to then are kept.",
        )
    else:
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        store.finish(
            run_id, Status.FAILED, f"The trainer exited with code {code}: {lines[-1] if lines else 'no output'}"
        )

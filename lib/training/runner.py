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

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lib.data.marks import session_marks_root
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.settings import Settings, load_settings
from lib.training.config import TrainConfig, check_limits
from lib.training.model_names import with_model_file_hash
from lib.training.resume import continue_config, resumable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_start_lock = threading.Lock()  # one check-then-start at a time within this server


@dataclasses.dataclass(frozen=True)
class _Finder:
    proc: subprocess.Popen
    owner: str | None
    visitor: str | None
    ends: float  # when its time limit ends it at the latest (time.time())


_finders: list[_Finder] = []  # this server's learning-rate finders: short trainings that write no run


def check_capacity(store: RunStore, owner: str | None, settings: Settings, visitor: str | None = None) -> None:
    """Raises ValueError when owner (this tab) or visitor (all their tabs) already has the runs allowed
    training, or the server is at its global cap (saying when the next slot should free up). A running
    learning-rate finder takes a slot as a run does."""
    finders = live_finders()
    mine = store.running(owner) if owner is not None else []
    if len(mine) + sum(f.owner == owner for f in finders if owner is not None) >= settings.max_runs_per_session:
        raise ValueError(
            f"Run {mine[0].name} is still training; stop it or wait for it to finish before starting another."
            if mine
            else "The learning-rate finder is still running; wait for its chart (it ends within "
            f"{_minutes_left(min(f.ends for f in finders if f.owner == owner))} min at most)."
        )
    theirs = len(store.running_of_visitor(visitor)) if visitor is not None else 0
    theirs += sum(f.visitor == visitor for f in finders if visitor is not None)
    if theirs >= settings.max_runs_per_visitor:
        raise ValueError(
            f"You already have {theirs} run(s) or learning-rate finder(s) training (the limit is "
            f"{settings.max_runs_per_visitor}, counted across your tabs); stop one or wait for it to finish."
        )
    here = [r for r in store.running() if r.host == socket.gethostname()]
    if len(here) + len(finders) >= settings.max_runs_global:
        raise ValueError(
            f"All {settings.max_runs_global} training slots of this server are taken; "
            f"{next_free_sentence(store, here, settings, finder_ends=[f.ends for f in finders])}"
        )


def _minutes_left(end: float) -> int:
    return max(1, round((end - time.time()) / 60))


def next_free_sentence(
    store: RunStore, running: list, settings: Settings, now: float | None = None, finder_ends: list[float] = ()
) -> str:
    """When the first of the running runs should end: its ETA, or the per-run time limit, whichever is sooner
    (a learning-rate finder's: its time limit, the latest it can end)."""
    from lib.runs.view import run_progress

    now = time.time() if now is None else now
    ends = list(finder_ends)
    for record in running:
        limit_end = record.created + settings.max_run_minutes * 60
        eta = run_progress(record, store.steps(record.id)).eta_s
        ends.append(min(limit_end, now + eta) if eta is not None else limit_end)
    wait = max(0.0, min(ends) - now)
    when = time.strftime("%H:%M UTC", time.gmtime(now + wait))
    return f"the next one should free up in about {max(1, round(wait / 60))} min (by {when}); try again then."


def start_run(
    config: TrainConfig,
    root: str | Path,
    store: RunStore,
    owner: str | None,
    *,
    settings: Settings | None = None,
    visitor: str | None = None,
) -> str:
    """Start a trainer subprocess for config on the ImageFolder at root; return the run id at once.

    Raises:
        ValueError: when owner already has a run training, the server is at its cap on concurrent runs,
            config exceeds the server's limits, or names weights its model does not have.
    """
    from lib.training.models import with_weights_preprocessing  # torchvision: only when a run starts

    settings = settings or load_settings()
    check_limits(config, settings)
    config = with_weights_preprocessing(with_model_file_hash(config))  # recorded: IMAGENET1K_V1, not DEFAULT
    return _spawn(config, root, store, owner, settings, visitor)


def _spawn(
    config: TrainConfig,
    root: str | Path,
    store: RunStore,
    owner: str | None,
    settings: Settings,
    visitor: str | None = None,
    parent: str | None = None,
) -> str:
    """Create the run (linked to `parent`, whose checkpoint the trainer then continues) and start its trainer."""
    with _start_lock:
        check_capacity(store, owner, settings, visitor)
        run_id = store.create_run(
            config.to_dict(), root=str(root), owner=owner, name=config.name, visitor=visitor, parent=parent
        )
        log = store.root / "logs" / f"{run_id}.log"
        # The trainer ends with this server, and within the per-run time limit.
        args = ["train", str(root), "--run-id", run_id, "--runs-dir", str(store.root)]
        args += ["--parent-pid", str(os.getpid()), "--max-minutes", str(settings.max_run_minutes)]
        # Deployed, each visitor's marks (files left out) are their own: the trainer reads that session's.
        marks = session_marks_root(owner) if settings.deployed else None
        proc = launch(args, log, settings, marks_dir=marks)
        store.update_run(run_id, pid=proc.pid)
    threading.Thread(target=_reap, args=(proc, store, run_id, log), daemon=True, name=f"reap-{run_id}").start()
    return run_id


def start_finder(
    config: TrainConfig,
    root: str | Path,
    store: RunStore,
    out: Path,
    owner: str | None,
    settings: Settings,
    visitor: str | None = None,
) -> subprocess.Popen:
    """Start `python -m lib lr-find` for config, its output (the JSON line last) to `out`: within the same
    limits and slots as a run, on its share of the cores; it writes no run.

    Raises:
        ValueError: when config is over the server's limits or no slot is free.
    """
    check_limits(config, settings)
    with _start_lock:
        check_capacity(store, owner, settings, visitor)
        args = ["lr-find", str(root), "--config", json.dumps(config.to_dict()), "--json"]
        # It ends with this server, and within the per-run time limit, as a run does.
        args += ["--parent-pid", str(os.getpid()), "--max-minutes", str(settings.max_run_minutes)]
        proc = launch(args, out, settings)
        _finders.append(_Finder(proc, owner, visitor, time.time() + settings.max_run_minutes * 60))
    threading.Thread(target=proc.wait, daemon=True, name=f"reap-lr-find-{proc.pid}").start()  # no zombie
    return proc


def live_finders() -> list[_Finder]:
    """This server's learning-rate finders still running (the ended ones are forgotten)."""
    _finders[:] = [f for f in _finders if f.proc.poll() is None]
    return list(_finders)


def launch(args: list[str], log: Path, settings: Settings, marks_dir: Path | None = None) -> subprocess.Popen:
    """Start `python -m lib ARGS` in its own session, output to log (deployed: its share of the cores).

    marks_dir: where the process reads the files marked to leave out (TORCHSCOPE_MARKS_DIR; lib.data.marks)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lib", *args]
    if settings.deployed:  # concurrent trainers share the cores, and leave the server its share
        cmd += ["--threads", str(trainer_threads(settings))]
    # The process opens images under the same per-image limits as this server.
    env = {
        **os.environ,
        "TORCHSCOPE_MAX_IMAGE_PIXELS": str(settings.max_image_pixels),
        "TORCHSCOPE_MAX_IMAGE_FRAMES": str(settings.max_image_frames),
        **({"TORCHSCOPE_MARKS_DIR": str(marks_dir)} if marks_dir else {}),
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def continue_run(
    parent_id: str,
    more_epochs: int,
    store: RunStore,
    owner: str | None,
    *,
    settings: Settings | None = None,
    visitor: str | None = None,
) -> str:
    """Train `more_epochs` more epochs of a run from its `last` checkpoint, as a new run linked to it.

    The server's epoch limit applies to the epochs this run adds, not to the parent's.

    Raises:
        ValueError: for a run that cannot be continued (see resumable), or the limits of start_run.
    """
    settings = settings or load_settings()
    parent = resumable(store, parent_id)
    config = continue_config({"config": parent.config, "epoch": parent.final.get("epoch", 0)}, more_epochs)
    check_limits(dataclasses.replace(config, epochs=more_epochs), settings)
    config = dataclasses.replace(config, name=f"{parent.name} +{more_epochs}")
    return _spawn(config, parent.root, store, owner, settings, visitor, parent=parent_id)


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


def interrupt_orphans(store: RunStore) -> list[str]:
    """Runs whose trainer outlived the server that started it (its --parent-pid is no longer its parent):
    killed, and marked interrupted. Called once when a server starts."""
    ended = []
    for record in store.running():
        if record.host != socket.gethostname() or not record.pid or not _orphaned_trainer(record.pid):
            continue
        store.finish(
            record.id,
            Status.INTERRUPTED,
            "The app's server restarted while the run trained; metrics up to then are kept.",
        )
        try:
            os.kill(record.pid, signal.SIGKILL)  # not SIGTERM: that would end it as `stopped`
        except OSError:
            pass
        ended.append(record.id)
    return ended


def _orphaned_trainer(pid: int) -> bool:
    """Whether pid is an app-started trainer whose parent is gone (Linux /proc; False where unknown)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        started_by = int(cmdline[cmdline.index(b"--parent-pid") + 1])
    except (OSError, ValueError, IndexError):
        return False
    return ppid != started_by

"""A sweep: the runs of a grid over one or two hyperparameters, trained one after another.

`grid` expands a base TrainConfig and the varied values into one config per run; `check_sweep_limits`
applies the server's limits to the whole sweep (the epoch limit to the sum of its runs' epochs);
`drive_sweep` is the loop of the driver process (`python -m lib sweep`): before each run it waits until
the concurrency limits allow one, and it stops when the sweep's stop flag is set. Each run has the
server's time limit of its own (a run over it ends `stopped`, and the next one starts); a driver the app
started also ends, its run `interrupted`, when the app's server does (lib.training.watch).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.runs.sweeps import SweepRecord, create_sweep, finish_sweep, get_sweep, live_sweeps, update_sweep
from lib.settings import Settings, load_settings
from lib.training.config import MODELS, OPTIMIZERS, SCHEDULES, TrainConfig
from lib.training.runner import _start_lock, check_capacity, check_limits, launch
from lib.training.watch import RunStop, time_limit

MAX_RUNS = 24  # runs in one sweep
SWEEPABLE = {  # the hyperparameters a sweep may vary, with how a typed value is read
    "lr": float,
    "batch_size": int,
    "weight_decay": float,
    "epochs": int,
    "optimizer": str,
    "schedule": str,
    "model": str,
    "image_size": int,
    "seed": int,
}
CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "model": MODELS}
WAIT_S = 1.0  # how often a waiting driver looks for a free slot


def parse_values(name: str, text: str) -> list:
    """'1e-3, 3e-3' -> [0.001, 0.003] for hyperparameter `name` (duplicates dropped, order kept).

    Raises:
        ValueError: for a name that cannot be swept, an empty list, or a value of the wrong type.
    """
    if name not in SWEEPABLE:
        raise ValueError(f"Cannot sweep {name!r}; choose one of {', '.join(SWEEPABLE)}.")
    values = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        try:
            value = SWEEPABLE[name](raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a valid {name}; give values separated by commas.") from None
        if value not in values:
            values.append(value)
    if not values:
        raise ValueError(f"Give at least one value for {name}, separated by commas (e.g. 1e-3, 3e-3).")
    return values


def grid(base: TrainConfig, axes: list) -> list[TrainConfig]:
    """One config per combination of the axes' values ([[name, values], ...], one or two axes), each
    named after what it varies (e.g. "lr=0.001 batch_size=32").

    Raises:
        ValueError: for no axis or more than two, the same name twice, or a combination TrainConfig refuses.
    """
    if not 1 <= len(axes) <= 2:
        raise ValueError(f"A sweep varies one or two hyperparameters, got {len(axes)}.")
    names = [name for name, _ in axes]
    if len(set(names)) != len(names):
        raise ValueError(f"A sweep varies two different hyperparameters, got {names[0]} twice.")
    configs = []
    for combo in itertools.product(*(values for _, values in axes)):
        changes = dict(zip(names, combo, strict=True))
        name = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())
        configs.append(dataclasses.replace(base, **changes, name=name))
    return configs


def check_sweep_limits(configs: list[TrainConfig], settings: Settings) -> None:
    """Raises ValueError when the sweep has too many runs, a run exceeds the server's limits, or all its
    runs together train more epochs than one run may (the deployed epoch limit covers the whole sweep)."""
    if len(configs) > MAX_RUNS:
        raise ValueError(f"This sweep has {len(configs)} runs; at most {MAX_RUNS}, so give fewer values.")
    for config in configs:
        check_limits(config, settings)
    total = sum(c.epochs for c in configs)
    if total > settings.max_epochs:
        raise ValueError(
            f"This sweep trains {total} epochs in all and this server allows at most {settings.max_epochs} "
            "per sweep; give fewer values or fewer epochs."
        )


def start_sweep(
    base: TrainConfig,
    axes: list,
    root: str | Path,
    store: RunStore,
    owner: str | None,
    *,
    settings: Settings | None = None,
    visitor: str | None = None,
) -> str:
    """Queue the grid as a sweep and start its driver process; return the sweep id at once.

    One sweep per tab (owner) and per visitor at a time: the check and the sweep's row are made under the
    start lock, so a second click before the driver's first run is refused. Its runs carry the visitor.

    Raises:
        ValueError: for a bad grid, a sweep over the server's limits, a sweep of this tab or visitor still
            running, or no free slot to start in.
    """
    settings = settings or load_settings()
    configs = grid(base, axes)
    check_sweep_limits(configs, settings)
    with _start_lock:
        _one_sweep_at_a_time(store, owner, visitor)
        check_capacity(store, owner, settings, visitor)
        sweep_id = create_sweep(store, base.to_dict(), axes, len(configs), root=str(root), owner=owner, visitor=visitor)
        log = store.root / "logs" / f"{sweep_id}.log"
        # The driver ends with this server, and each of its runs within the per-run time limit.
        args = ["sweep", "--sweep-id", sweep_id, "--runs-dir", str(store.root), "--parent-pid", str(os.getpid())]
        proc = launch([*args, "--max-minutes", str(settings.max_run_minutes)], log, settings)
        update_sweep(store, sweep_id, pid=proc.pid)
    threading.Thread(target=_reap, args=(proc, store, sweep_id, log), daemon=True, name=f"reap-{sweep_id}").start()
    return sweep_id


def _one_sweep_at_a_time(store: RunStore, owner: str | None, visitor: str | None) -> None:
    """Raises ValueError when this tab or visitor has a sweep still running (its queued runs are already
    counted against the epoch limit)."""
    if owner is None and visitor is None:  # the command line: no one to count
        return
    running = live_sweeps(store, owner, visitor)
    if running:
        raise ValueError(
            f"Your sweep {running[0].id} is still running ({running[0].total} runs queued); stop it or wait "
            "for it to finish before starting another."
        )


def _reap(proc, store: RunStore, sweep_id: str, log: Path) -> None:
    """Wait for the driver; a driver that ended without finishing its sweep leaves it `failed`, saying why."""
    code = proc.wait()
    record = get_sweep(store, sweep_id)
    if record is not None and record.status == Status.RUNNING:
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        finish_sweep(store, sweep_id, Status.FAILED, f"The sweep exited with code {code}: {lines[-1] if lines else ''}")


@dataclass
class SweepOutcome:
    status: Status
    run_ids: list[str]


def drive_sweep(
    store: RunStore,
    sweep_id: str,
    settings: Settings,
    stop: threading.Event,
    *,
    cache_bytes: int,
    max_minutes: float | None = None,
) -> SweepOutcome:
    """Train the sweep's runs one after another in this process; finish the sweep with its status.

    `stop` ends the sweep (its reason and status, when it is a StopEvent, become the running run's);
    `max_minutes` ends one run, and the sweep goes on with the next.

    Raises:
        ValueError: for an unknown sweep or a dataset without usable images.
    """
    sweep = get_sweep(store, sweep_id)
    if sweep is None:
        raise ValueError(f"No sweep {sweep_id} in {store.root}.")
    from lib.data.index import build_index
    from lib.training.trainer import execute_run

    update_sweep(store, sweep_id, pid=os.getpid(), message="indexing the dataset")
    index = build_index(sweep.root)
    configs, run_ids = grid(TrainConfig.from_dict(sweep.base), sweep.axes), []
    for i, config in enumerate(configs, 1):
        if not _wait_for_a_slot(store, sweep, settings, stop):
            break
        update_sweep(store, sweep_id, message=f"run {i} of {len(configs)}: {config.name}")
        run_id = store.create_run(
            config.to_dict(),
            root=index.root,
            owner=sweep.owner,
            pid=os.getpid(),
            name=config.name,
            sweep=sweep_id,
            visitor=sweep.visitor,
        )
        store.update_run(run_id, fingerprint=index.fingerprint(), classes=index.classes)
        run_ids.append(run_id)
        run_stop = RunStop(stop)
        timer = time_limit(store, run_id, run_stop, max_minutes) if max_minutes else None
        try:
            execute_run(store, run_id, config, index.samples, index.classes, stop=run_stop, cache_bytes=cache_bytes)
        finally:
            if timer:
                timer.cancel()
    if stop.is_set():  # a signal, or the app's server gone (`interrupted`)
        status = getattr(stop, "status", Status.STOPPED)
    else:
        status = Status.STOPPED if _stopping(store, sweep_id, stop) else Status.COMPLETED
    finish_sweep(store, sweep_id, status, f"{len(run_ids)} of {len(configs)} runs trained.")
    return SweepOutcome(status, run_ids)


def _stopping(store: RunStore, sweep_id: str, stop: threading.Event) -> bool:
    record = get_sweep(store, sweep_id)
    return stop.is_set() or (record is not None and record.stop_requested)


def _wait_for_a_slot(store: RunStore, sweep: SweepRecord, settings: Settings, stop: threading.Event) -> bool:
    """Wait until the concurrency limits allow the next run; False when the sweep is stopped meanwhile."""
    while not _stopping(store, sweep.id, stop):
        try:
            check_capacity(store, sweep.owner, settings, sweep.visitor)
            return True
        except ValueError as e:
            update_sweep(store, sweep.id, message=f"waiting: {e}")
            stop.wait(WAIT_S)
    return False

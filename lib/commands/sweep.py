"""`python -m lib sweep SOURCE --vary lr=1e-3,3e-3 [--vary batch-size=32,64] [train options]`: train a grid
of runs one after another into the run store, grouped as one sweep. The app starts the same command with
--sweep-id for a sweep it created, --parent-pid and --max-minutes. Exit codes: 0 every run trained, 2 bad
input, 4 stopped (SIGINT/SIGTERM, Stop in the app or the end of --parent-pid stop the running run after its
batch and start no further one). --max-minutes ends one run, as `stopped`; the sweep goes on with the next.
"""

from __future__ import annotations

import json

from lib.charts.numbers import percent
from lib.commands.options import check_args
from lib.commands.plumbing import run_config, stop_on_signals
from lib.data.sources import cli_root
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.runs.sweeps import create_sweep, sweep_runs, sweep_winner
from lib.settings import load_settings
from lib.training.sweep import check_sweep_limits, grid, parse_values
from lib.training.watch import ParentWatch, StopEvent


def _axes(args) -> list:
    """[[field, values], ...] from the --vary options."""
    axes = []
    for spec in args.vary:
        name, sep, values = spec.partition("=")
        if not sep:
            raise ValueError(f"Write --vary as NAME=V1,V2 (e.g. lr=1e-3,3e-3), got {spec!r}.")
        field = name.strip().replace("-", "_")
        axes.append([field, parse_values(field, values)])
    return axes


def _create(store: RunStore, args) -> str:
    """A new sweep in the store from the command line's options (limits checked first)."""
    if args.source is None:
        raise ValueError("Name a dataset to sweep on (a folder, a .zip, or `sample`), or --sweep-id.")
    base, axes = run_config(args), _axes(args)
    configs = grid(base, axes)
    check_sweep_limits(configs, load_settings())
    return create_sweep(store, base.to_dict(), axes, len(configs), root=str(cli_root(args.source)), owner=None)


def run(args) -> int:
    check_args(args)
    store = RunStore(args.runs_dir)
    sweep_id = args.sweep_id or _create(store, args)
    import torch

    from lib.settings import default_threads
    from lib.training.sweep import drive_sweep

    torch.set_num_threads(args.threads or default_threads())
    stop = StopEvent()
    server = ParentWatch(args.parent_pid, stop) if args.parent_pid is not None else None
    try:
        with stop_on_signals(stop):
            outcome = drive_sweep(
                store, sweep_id, load_settings(), stop, cache_bytes=args.cache_mb * 2**20, max_minutes=args.max_minutes
            )
    finally:
        if server:
            server.cancel()
    runs = sweep_runs(store, sweep_id)
    winner = sweep_winner(runs)
    if args.json:
        rows = [{"run_id": r.id, "name": r.name, "status": r.status, **r.final} for r in runs]
        print(json.dumps({"sweep_id": sweep_id, "status": outcome.status, "winner": winner, "runs": rows}))
    else:
        for r in runs:
            acc = r.final.get("val_accuracy")
            mark = "  <- winner" if r.id == winner else ""
            print(
                f"{r.id}  {r.name}: {r.status}, val accuracy {percent(acc)}{mark}"
                if acc is not None
                else f"{r.id}  {r.name}: {r.status}"
            )
    return 4 if outcome.status in (Status.STOPPED, Status.INTERRUPTED) else 0

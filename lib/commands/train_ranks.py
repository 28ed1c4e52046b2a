"""`torchrun --nproc-per-node N -m lib train SOURCE ...`: one run over N processes (lib.training.distributed).

Every rank parses the same flags and indexes SOURCE on its own host; the ranks check that they see the same
dataset, join the process group and train with DDP, each decoding only its shard. Rank 0 alone creates the
run, writes its steps, epochs, checkpoint and final status, and prints. A rank that fails leaves its reason
for rank 0 (see Dist.report_failure) and exits 1.

Exit codes: 0 when the ranks ended the run together, completed, stopped or diverged (the status is in the
store and the --json line), 1 when it failed. torchrun reports any other code as a failed worker and
terminates the rest, so a Stop must not look like one; it exits 1 itself whatever code a worker gave.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import torch

from lib.commands.plumbing import (
    check_runnable,
    open_store,
    report,
    run_config,
    start_watches,
    stop_on_signals,
    store_hooks,
)
from lib.data.index import DatasetIndex, build_index, verify_index
from lib.data.sources import cli_root
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.settings import runs_dir as runs_folder
from lib.training import distributed
from lib.training.config import fits_in_memory
from lib.training.device import idle_cores, resolve_device
from lib.training.distributed import Dist
from lib.training.engine import Hooks, fit
from lib.training.timings import Timings, process_age
from lib.training.trainer import execute_run
from lib.training.watch import StopEvent


def run_ranks(args) -> NoReturn:
    """This rank's part of the run; the process exits 1 when the run failed, else 0 (see distributed.leave).

    Raises:
        ValueError: on bad flags or data, before training starts.
    """
    if args.run_id is not None:
        raise ValueError("--run-id names a run the app started in one process; leave it out under torchrun.")
    if args.resume is not None:
        raise ValueError("--resume continues a run in one process; run it without torchrun.")
    if args.source is None:
        raise ValueError("Name a dataset to train on (a folder, a .zip, or `sample`).")
    ctx = distributed.from_environment()
    config = run_config(args, ctx.world_size)
    index = build_index(str(cli_root(args.source)))
    if index.num_images == 0:
        raise ValueError(f"{args.source} has no usable images; run `python -m lib inspect` to see why.")
    check_runnable(index, config)
    distributed.start(ctx, resolve_device(config.device))
    index = _checked_index(ctx, index, args)
    torch.set_num_threads(args.threads or max(1, idle_cores() // ctx.local_world_size))
    stop = StopEvent()
    with stop_on_signals(stop):
        status = _train(ctx, args, config, index, stop)
    if status == Status.FAILED:
        distributed.leave(1)  # after a lost rank, tearing the group down can block: just exit
    distributed.finish(ctx)
    distributed.leave(0)


def _train(ctx: Dist, args, config, index: DatasetIndex, stop: threading.Event) -> Status:
    cache_bytes = args.cache_mb * 2**20
    if not ctx.is_main:
        run_id = ctx.from_main(None)
        result = fit(config, index.samples, index.classes, Hooks(), stop, cache_bytes=cache_bytes, dist=ctx)
        if result.status == Status.FAILED:
            ctx.report_failure(result.message)
            reason = ctx.failure_reason(result.message)
            print(f"error: rank {ctx.rank}: {reason}", file=sys.stderr)
            if reason.startswith("Rank 0 "):
                _record_for_rank0(args.runs_dir, run_id, reason)
        return result.status
    store = open_store(args.runs_dir)
    run_id = store.create_run(config.to_dict(), root=index.root, name=config.name)
    store.update_run(run_id, pid=os.getpid(), fingerprint=index.fingerprint(), classes=index.classes, root=index.root)
    ctx.from_main(run_id)
    hooks = store_hooks(store, run_id, args.json)
    watches = start_watches(store, run_id, stop, args)  # --max-minutes: rank 0 stops, and the stop reaches every rank
    try:
        result = execute_run(
            store,
            run_id,
            config,
            index.samples,
            index.classes,
            hooks=hooks,
            stop=stop,
            cache_bytes=cache_bytes,
            dist=ctx,
        )
    finally:
        for watch in watches:
            watch.cancel()
    timings = Timings(result.timings)  # rank 0's phases; "total" is this process's whole life
    timings["total"] = process_age() or sum(timings.values())
    record = store.get_run(run_id)
    report(run_id, result, args.json, timings, record.checkpoint if record else None)
    return result.status


def _record_for_rank0(runs_dir: str | None, run_id: str, reason: str) -> None:
    """Rank 0 died (on this host) before writing a final status: a survivor records why, when it sees the store."""
    path = Path(runs_dir) if runs_dir else runs_folder()
    if not (path / "runs.sqlite").exists():
        return  # rank 0's runs folder is on another host: the app will show the run as interrupted
    store = RunStore(path)
    record = store.get_run(run_id)
    if record is not None and record.status in (Status.RUNNING, Status.INTERRUPTED):
        last = store.files.checkpoint_path(run_id, "last")
        store.finish(run_id, Status.FAILED, reason, str(last) if last.exists() else None)


def _checked_index(ctx: Dist, index: DatasetIndex, args) -> DatasetIndex:
    """The index every rank agrees on; for streamed data, without the files that do not decode, each rank
    checking 1/N of them.

    Raises:
        ValueError: on every rank, when the ranks see different datasets (a host with another copy).
    """
    key = distributed.dataset_key(index.classes, [(index.relpath(p), t) for p, t in index.samples])
    keys = ctx.gather(key)
    if differ := [r for r, k in enumerate(keys) if k != keys[0]]:
        raise ValueError(
            f"Rank {differ[0]} sees a different dataset at {args.source} than rank 0; give every host the same copy."
        )
    if fits_in_memory(math.ceil(index.num_images / ctx.world_size), args.image_size, args.cache_mb * 2**20):
        return index  # the engine's one decode leaves out what fails
    mine = replace(
        index, samples=index.samples[ctx.rank :: ctx.world_size], headers=index.headers[ctx.rank :: ctx.world_size]
    )
    before = {b.path for b in mine.bad_files}
    failed = [(b.path, b.reason) for b in verify_index(mine).bad_files if b.path not in before]
    failed = sorted(f for part in ctx.gather(failed) for f in part)
    if ctx.is_main:
        for path, reason in failed:
            print(f"skipped {path}: {reason}", file=sys.stderr)
    drop = {path for path, _ in failed}
    keep = [i for i, (p, _) in enumerate(index.samples) if index.relpath(p) not in drop]
    return replace(index, samples=[index.samples[i] for i in keep], headers=[index.headers[i] for i in keep])

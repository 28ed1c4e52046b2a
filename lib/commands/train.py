"""`python -m lib train SOURCE ...`: train headless into the run store the app reads.

Exit codes: 0 completed, 1 failed, 2 bad input (nothing trained), 3 diverged, 4 stopped (SIGINT/SIGTERM
or a Stop from the app). With --json the last stdout line is one JSON object describing the run.
Under `torchrun --nproc-per-node N -m lib train ...` the run spans N processes (lib.training.distributed);
rank 0 alone writes the store and prints, and a rank exits 1 only when the run failed (lib.commands.train_ranks).
"""

from __future__ import annotations

import os
import sys

from lib.commands.options import check_args
from lib.commands.plumbing import (
    check_runnable,
    open_store,
    report,
    run_config,
    start_watches,
    stop_on_signals,
    store_hooks,
)
from lib.data.index import build_index, verify_index
from lib.data.sources import cli_root
from lib.runs.status import Status
from lib.runs.store import RunStore
from lib.training.config import TrainConfig, fits_in_memory
from lib.training.resume import continue_config, resumable
from lib.training.timings import Timings, process_age
from lib.training.watch import StopEvent

EXIT_CODES = {Status.COMPLETED: 0, Status.FAILED: 1, Status.DIVERGED: 3, Status.STOPPED: 4, Status.INTERRUPTED: 4}


def run(args) -> int:
    timings = Timings(python=process_age() or 0.0)  # interpreter start-up and argument parsing
    check_args(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun with several processes
        from lib.commands.train_ranks import run_ranks

        return run_ranks(args)
    store = open_store(args.runs_dir)
    run_id, config, source, start = _claim_run(store, args)
    with timings("index"):
        index = _index(source, args, store, run_id, config)
    decoding = None
    if fits_in_memory(index.num_images, config.image_size, args.cache_mb * 2**20):
        from lib.pixels.decode import Decoding

        # Workers decode (Pillow and numpy only) while this process imports torch.
        decoding = Decoding([p for p, _ in index.samples], config.resizing(), workers=args.threads or 0)
    with timings("imports"):
        import torch  # only now: `runs`, --help and bad input answer without loading torch

        from lib.training.device import idle_cores
        from lib.training.trainer import execute_run

        _import_dynamo()  # torch.optim imports it at the first optimizer: here it overlaps the decode

    torch.set_num_threads(args.threads or idle_cores())
    with timings("store"):
        if run_id is None:
            run_id = store.create_run(config.to_dict(), root=index.root, name=config.name, parent=args.resume)
        fingerprint = index.fingerprint()
        store.update_run(run_id, pid=os.getpid(), fingerprint=fingerprint, classes=index.classes, root=index.root)
    stop = StopEvent()
    watches = start_watches(store, run_id, stop, args)
    try:
        with stop_on_signals(stop):
            result = execute_run(
                store,
                run_id,
                config,
                index.samples,
                index.classes,
                hooks=store_hooks(store, run_id, args.json),
                stop=stop,
                cache_bytes=args.cache_mb * 2**20,
                decoding=decoding,
                start=start,
                note=left_out_note(index),
            )
    finally:
        for watch in watches:
            watch.cancel()
    timings.update(result.timings)
    timings["total"] = process_age() or sum(timings.values())
    record = store.get_run(run_id)
    report(run_id, result, args.json, timings, record.checkpoint if record else None)
    return EXIT_CODES[result.status]


def left_out_note(index) -> str:
    """What the run's message says about files the user marked to leave out (lib.data.marks), or nothing."""
    n = len(index.left_out)
    if not n:
        return ""
    return f"Left out {n} marked file{'s' if n > 1 else ''}: trained on {index.num_images:,} images."


def _import_dynamo() -> None:
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # a torch without it: nothing to wait for later either
        pass


def _index(source: str, args, store: RunStore, run_id: str | None, config: TrainConfig):
    """The samples to train on. In memory, the engine's one decode leaves out what fails, so the file list
    is enough (no header pass); streamed batches cannot drop a file mid-epoch, so every image is checked first.
    """
    try:
        index = build_index(str(cli_root(source)), headers=False)
        if index.num_images == 0:
            raise ValueError(f"{source} has no usable images; run `python -m lib inspect` to see why.")
        if index.left_out:
            print(left_out_note(index), file=sys.stderr)
        if not fits_in_memory(index.num_images, config.image_size, args.cache_mb * 2**20):
            index = verify_index(build_index(index.root))
            for bad in index.bad_files:
                print(f"skipped {bad.path}: {bad.reason}", file=sys.stderr)
        check_runnable(index, config)
    except (ValueError, OSError) as e:
        if run_id is not None:
            store.finish(run_id, Status.FAILED, str(e))
        raise
    return index


def _claim_run(store: RunStore, args) -> tuple[str | None, TrainConfig, str, dict | None]:
    """(run id, config, source, checkpoint to start from). The run id is the app's pre-created run with
    --run-id (None: create one); the checkpoint is the parent's `last` for --resume or a run with a parent."""
    if args.run_id is not None:
        record = store.get_run(args.run_id)
        if record is None:
            raise ValueError(f"No run {args.run_id} in {store.root}; leave out --run-id to start a new run.")
        start = store.files.load_checkpoint(record.parent, "last") if record.parent else None
        return args.run_id, TrainConfig.from_dict(record.config), args.source or record.root, start
    if args.resume is not None:
        parent = resumable(store, args.resume)
        start = store.files.load_checkpoint(parent.id, "last")
        return None, continue_config(start, args.epochs, name=args.name), parent.root, start
    if args.source is None:
        raise ValueError("Name a dataset to train on (a folder, a .zip, or `sample`), or --resume RUN_ID.")
    return None, run_config(args), args.source, None

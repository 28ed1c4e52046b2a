"""`python -m lib train SOURCE ...`: train headless into the run store the app reads.

Exit codes: 0 completed, 1 failed, 2 bad input (nothing trained), 3 diverged, 4 stopped (SIGINT/SIGTERM
or a Stop from the app). With --json the last stdout line is one JSON object describing the run.
Under `torchrun --nproc-per-node N -m lib train ...` the run spans N processes (lib.training.distributed);
rank 0 alone writes the store and prints, and a rank exits 1 only when the run failed (lib.commands.train_ranks).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from lib.data.index import build_index, verify_index
from lib.data.sources import cli_root
from lib.runs.status import Status
from lib.runs.store import RunStore, StoreError
from lib.training.config import (
    DEFAULT_CACHE_MB,
    MODELS,
    NORMALIZATIONS,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    fits_in_memory,
)
from lib.training.resume import continue_config, resumable
from lib.training.timings import Timings, process_age
from lib.training.watch import ParentWatch, StopEvent, time_limit

EXIT_CODES = {Status.COMPLETED: 0, Status.FAILED: 1, Status.DIVERGED: 3, Status.STOPPED: 4, Status.INTERRUPTED: 4}
_D = TrainConfig()  # the defaults the help text states


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a dataset; the run lands in the run store",
        epilog="exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 4 stopped; under torchrun 0 unless "
        "the run failed (its status is in the store and the --json line)",
    )
    p.add_argument(
        "source", nargs="?", default=None, help="an ImageFolder folder, a .zip of one, or `sample` (not with --resume)"
    )
    add_recipe_options(p)
    p.add_argument("--name", default="", help="a label for the run (default: the run id)")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="the run store folder (default: $TORCHSCOPE_RUNS_DIR or ~/.cache/torchscope/runs)",
    )
    p.add_argument(
        "--cache-mb",
        type=int,
        default=DEFAULT_CACHE_MB,
        help=f"decode once and keep images in memory up to this size, else stream (default: {DEFAULT_CACHE_MB})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads and decode workers (default: threads for the cores the 1-minute load average "
        "leaves free, at least 1; decode workers for every core)",
    )
    p.add_argument(
        "--run-id",
        default=None,
        help="train a run the app already created in the store, with its stored config (default: a new run)",
    )
    add_watch_options(p)
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue RUN_ID from its last checkpoint for --epochs more, as a new run linked to it, on the "
        "parent's dataset with its recipe; the other training options are ignored (default: a new run)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line (default: text)")
    p.set_defaults(func=run)


def add_watch_options(p) -> None:
    """What ends a run from outside (lib.training.watch): shared by `train` and `sweep` (there, per run)."""
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop a run after this many minutes of training, as `stopped` with the reason (default: no limit)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="end the run as `interrupted` when process PID, which started this command, exits (the app passes "
        "its own; default: none)",
    )


def _augmentation_options(p) -> None:
    """The training batches' augmentation: the fields the Channels page previews."""
    g = p.add_argument_group("augmentation (training batches only; preview it on the Channels page)")
    g.add_argument(
        "--random-crop",
        action="store_true",
        help="pad each side by max(1, size // 8) px (reflect), crop back at a random offset (default: off)",
    )
    g.add_argument("--hflip", action="store_true", help="mirror left-right with probability 0.5 (default: off)")
    g.add_argument(
        "--rotation",
        type=float,
        default=_D.rotation,
        metavar="DEG",
        help=f"rotate by a random angle in [-DEG, DEG], 0 to 180 (default: {_D.rotation:g})",
    )
    g.add_argument(
        "--color-jitter",
        type=float,
        default=_D.color_jitter,
        metavar="J",
        help=f"scale brightness, contrast, saturation by random factors in [1-J, 1+J], 0 to 1 (default: {_D.color_jitter:g})",
    )
    g.add_argument("--augment", action="store_true", help="shorthand for --random-crop --hflip (default: off)")


def check_args(args) -> None:
    """Refuse options no run could use, before anything starts.

    Raises:
        ValueError: one sentence per bad option.
    """
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}; leave it out to use every core.")
    if args.cache_mb < 0:
        raise ValueError(f"--cache-mb must be zero or more, got {args.cache_mb}; 0 streams every batch from disk.")
    parent_pid, max_minutes = getattr(args, "parent_pid", None), getattr(args, "max_minutes", None)  # lr-find: none
    if parent_pid is not None and parent_pid < 1:
        raise ValueError(f"--parent-pid must be a process id, got {parent_pid}.")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"--max-minutes must be a positive number, got {max_minutes}.")


def open_store(runs_dir: str | None) -> RunStore:
    """The run store a trainer writes to; a damaged one is healed (said on stderr).

    Raises:
        ValueError: when the folder cannot be created or written.
    """
    try:
        store = RunStore(runs_dir)
    except StoreError as e:
        raise ValueError(str(e)) from None
    if store.read_only:
        raise ValueError(f"The runs folder {store.root} is not writable; give --runs-dir a folder you can write.")
    if store.notice:
        print(f"warning: {store.notice}", file=sys.stderr)
    return store


def check_runnable(index, config: TrainConfig) -> None:
    """Refuse a dataset or device the run cannot use, before it starts.

    Raises:
        ValueError: naming the class with too few images, or the missing device.
    """
    few = [c for c, n in index.class_counts().items() if n == 1]
    if few:
        raise ValueError(
            f"Class {few[0]} has 1 image; each class needs at least 2 to hold one out for validation, "
            "so add images or remove the class folder."
        )
    if config.device not in ("auto", "cpu"):  # those always resolve: torch is not imported for them here
        from lib.training.device import resolve_device

        resolve_device(config.device)


def add_recipe_options(p) -> None:
    """The TrainConfig options, shared by `train`, `lr-find` and `sweep`."""
    p.add_argument("--model", choices=MODELS, default=_D.model, help=f"architecture (default: {_D.model})")
    p.add_argument(
        "--epochs",
        type=int,
        default=_D.epochs,
        help=f"passes over the training split; with --resume, how many more (default: {_D.epochs})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=_D.batch_size,
        help=f"images per step; under torchrun over all processes, each rank taking 1/N (default: {_D.batch_size})",
    )
    p.add_argument("--lr", type=float, default=_D.lr, help=f"learning rate (default: {_D.lr})")
    p.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=_D.optimizer, help=f"sgd uses momentum 0.9 (default: {_D.optimizer})"
    )
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay, help=f"(default: {_D.weight_decay})")
    p.add_argument(
        "--schedule", choices=SCHEDULES, default=_D.schedule, help=f"learning-rate schedule (default: {_D.schedule})"
    )
    p.add_argument(
        "--image-size", type=int, default=_D.image_size, help=f"square side in pixels (default: {_D.image_size})"
    )
    _augmentation_options(p)
    p.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=_D.normalization,
        help=f"per-channel mean/std to subtract (default: {_D.normalization})",
    )
    p.add_argument(
        "--val-split",
        type=float,
        default=_D.val_split,
        help=f"fraction of each class held out for validation (default: {_D.val_split})",
    )
    p.add_argument(
        "--seed", type=int, default=_D.seed, help=f"seed for split, init, shuffling, augmentation (default: {_D.seed})"
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default=_D.device,
        help=f"auto picks cuda, then mps, then cpu (default: {_D.device})",
    )
    p.add_argument("--max-batches", type=int, default=None, help="batches per epoch, for a dry run (default: all)")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="resnet18 only: start from ImageNet weights already in the torch hub cache, never downloaded (default: off)",
    )


def config_from_args(args, world_size: int = 1) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        image_size=args.image_size,
        random_crop=args.random_crop or args.augment,
        hflip=args.hflip or args.augment,
        rotation=args.rotation,
        color_jitter=args.color_jitter,
        normalization=args.normalization,
        val_split=args.val_split,
        seed=args.seed,
        device=args.device,
        max_batches=args.max_batches,
        pretrained=args.pretrained,
        name=args.name,
        world_size=world_size,
    )


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
        decoding = Decoding([p for p, _ in index.samples], config.image_size, workers=args.threads or 0)
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
    # SIGINT/SIGTERM end the run as `stopped` after the current batch, metrics and checkpoint kept.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    watches = _watches(store, run_id, stop, args)
    try:
        result = execute_run(
            store,
            run_id,
            config,
            index.samples,
            index.classes,
            hooks=_hooks(store, run_id, args.json),
            stop=stop,
            cache_bytes=args.cache_mb * 2**20,
            decoding=decoding,
            start=start,
            note=left_out_note(index),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for watch in watches:
            watch.cancel()
    timings.update(result.timings)
    timings["total"] = process_age() or sum(timings.values())
    record = store.get_run(run_id)
    _report(run_id, result, args.json, timings, record.checkpoint if record else None)
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


def _watches(store: RunStore, run_id: str, stop: StopEvent, args) -> list[threading.Timer]:
    """Started timers that end the run: the per-run time limit, and the parent-process watch."""
    watches: list[threading.Timer] = []
    if args.max_minutes:
        watches.append(time_limit(store, run_id, stop, args.max_minutes))
    if args.parent_pid is not None:
        watches.append(ParentWatch(args.parent_pid, stop))
    return watches


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
    return None, config_from_args(args), args.source, None


def _report(run_id: str, result, as_json: bool, timings: Timings, checkpoint: str | None) -> None:
    """The run's outcome: one JSON object, or a line plus where its checkpoint is."""
    last = result.epochs[-1] if result.epochs else {}
    summary = {
        "run_id": run_id,
        "status": result.status,
        "message": result.message,
        "epochs": len(result.epochs),
        "steps": len(result.losses),
        "last_step_loss": result.losses[-1] if result.losses else None,
        "train_loss": last.get("train_loss"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "samples_per_sec": last.get("samples_per_sec"),
        "timings": timings.rounded(),  # seconds per phase; "total" is the whole process
        "checkpoint": checkpoint,
    }
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"run {run_id}: {result.status}. {result.message}")
        print(f"checkpoint: {checkpoint}" if checkpoint else "checkpoint: none (no epoch finished)")


def _hooks(store: RunStore, run_id: str, as_json: bool):
    """Store hooks; for a person at a terminal (no --json) they also print one line per epoch."""
    from lib.training.trainer import StoreHooks

    class PrintingHooks(StoreHooks):
        def on_epoch(self, epoch: int, metrics: dict) -> None:
            super().on_epoch(epoch, metrics)
            print(
                f"epoch {epoch}: train loss {metrics['train_loss']:.4f}, val loss {metrics['val_loss']:.4f}, "
                f"val accuracy {metrics['val_accuracy']:.1%}, {metrics['samples_per_sec']:.0f} samples/s",
                flush=True,
            )

    return StoreHooks(store, run_id) if as_json else PrintingHooks(store, run_id)

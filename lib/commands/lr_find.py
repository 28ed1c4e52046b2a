"""`python -m lib lr-find SOURCE [train options]`: the learning-rate range test, headless; writes no run.

The sweep and the rule for the suggestion are in lib/training/lr_finder.py. With --json stdout's last line
is one JSON object: suggested_lr, lrs, losses, smoothed, stopped_early, rule.
"""

from __future__ import annotations

import json

from lib.commands.train import add_recipe_options, check_args, config_from_args
from lib.data.index import build_index
from lib.data.sources import cli_root
from lib.training.config import DEFAULT_CACHE_MB, TrainConfig

_DEFAULTS = dict(start_lr=1e-7, end_lr=10.0, num_batches=100)  # LRFinderConfig's, stated without torch


def register(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="suggest a learning rate with a short exponential sweep; writes no run",
        epilog="--lr, --schedule, --epochs and --max-batches are ignored: the sweep sets the learning rate",
    )
    p.add_argument("source", help="an ImageFolder folder, a .zip of one, or `sample`")
    add_recipe_options(p)
    p.add_argument("--start-lr", type=float, default=_DEFAULTS["start_lr"], help="first lr (default: 1e-07)")
    p.add_argument("--end-lr", type=float, default=_DEFAULTS["end_lr"], help="last lr (default: 10)")
    p.add_argument(
        "--num-batches", type=int, default=_DEFAULTS["num_batches"], help="batches in the sweep (default: 100)"
    )
    p.add_argument("--cache-mb", type=int, default=DEFAULT_CACHE_MB, help=f"as for train (default: {DEFAULT_CACHE_MB})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    p.add_argument(
        "--config", default=None, help="a TrainConfig as JSON, as the app passes it; replaces the options above"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line (default: text)")
    p.set_defaults(func=run, name="")


def run(args) -> int:
    # Validated before torch loads.
    check_args(args)
    config = TrainConfig.from_dict(json.loads(args.config)) if args.config else config_from_args(args)
    index = build_index(str(cli_root(args.source)))
    if index.num_images == 0:
        raise ValueError(f"{args.source} has no usable images; run `python -m lib inspect` to see why.")
    import torch

    from lib.settings import default_threads
    from lib.training.lr_finder import LRFinderConfig, find_lr

    torch.set_num_threads(args.threads or default_threads())

    finder = LRFinderConfig(start_lr=args.start_lr, end_lr=args.end_lr, num_batches=args.num_batches)
    result = find_lr(config, index.samples, index.classes, finder, cache_bytes=args.cache_mb * 2**20)
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.suggested_lr is None:
        print("No suggestion: every batch's loss was non-finite; lower --start-lr or turn normalization on.")
    else:
        end = "stopped early: the loss diverged" if result.stopped_early else "ran every batch"
        print(f"suggested learning rate: {result.suggested_lr:.3g} ({result.rule}); {len(result.lrs)} batches, {end}")
    return 0

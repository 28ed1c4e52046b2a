"""`python -m lib lr-find SOURCE [train options]`: the learning-rate range test, headless; writes no run.

The sweep and the rule for the suggestion are in lib/training/lr_finder.py. With --json stdout's last line
is one JSON object: suggested_lr, lrs, losses, smoothed, stopped_early, rule.
"""

from __future__ import annotations

import json

from lib.commands.options import check_args
from lib.commands.plumbing import run_config
from lib.data.index import build_index
from lib.data.sources import cli_root
from lib.training.config import TrainConfig


def run(args) -> int:
    # Validated before torch loads.
    check_args(args)
    from lib.training.watch import exit_watches

    exit_watches(args.parent_pid, args.max_minutes)  # the app's finder ends with its server and its time limit
    config = TrainConfig.from_dict(json.loads(args.config)) if args.config else run_config(args)
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

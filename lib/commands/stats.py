"""`python -m lib stats SOURCE [--size N] [--json]`: exact per-channel mean and std of a dataset.

Under `torchrun --nproc-per-node N -m lib stats SOURCE` each rank counts every N-th image and the level
histograms are all-reduced: integers add exactly, so the result is the single-process one; rank 0 prints.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

from lib.data.index import build_index
from lib.data.sources import cli_root
from lib.pixels.stats import ChannelStats, StatsConfig, channel_counts, channel_stats, level_values, stats_from_counts


def run(args) -> int:
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be at least 1, got {args.size}; leave it out for native size.")
    if args.workers < 0:
        raise ValueError(f"--workers must be zero or more, got {args.workers}; 0 uses every core.")
    config = StatsConfig(size=args.size, workers=args.workers)
    # No header pass: the decode below reads every file anyway and lists each one that fails.
    index = build_index(str(cli_root(args.source)), headers=False)
    if index.num_images == 0:
        raise ValueError(f"{args.source} has no usable images; check it with `python -m lib inspect {args.source}`.")
    if index.left_out:  # marked by the user (lib.data.marks): say so, on stderr so --json stays one object
        print(f"left out {len(index.left_out)} marked file(s)", file=sys.stderr)
    paths = [p for p, _ in index.samples]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun with several processes
        stats = stats_over_ranks(paths, config)
        if stats is None:
            return 0  # rank 0 prints
    else:
        stats = channel_stats(paths, config)
    if args.json:
        print(json.dumps({"root": index.root, **stats.to_dict(), "left_out": len(index.left_out)}))
        return 0
    print(f"{index.root}: {stats.num_images:,} images, {stats.num_pixels:,} pixels a channel")
    for name, values in (("mean", stats.mean), ("std", stats.std), ("min", stats.min), ("max", stats.max)):
        print(f"  {name:4} " + "  ".join(f"{v:.6f}" for v in values))
    print(f"  NaN {stats.nan_count}, Inf {stats.inf_count}")
    for path, reason in stats.failed:
        print(f"  failed: {index.relpath(path)}: {reason}", file=sys.stderr)
    return 0


def stats_over_ranks(paths: list[str], config: StatsConfig) -> ChannelStats | None:
    """This rank's share of the histogram, all-reduced; the statistics on rank 0, None on the others.

    Raises:
        ValueError: on rank 0, when no image decodes.
    """
    import torch

    from lib.training import distributed

    ctx = distributed.from_environment()
    distributed.start(ctx, torch.device("cpu"))
    if not config.workers:  # the host's cores shared between its ranks
        config = replace(config, workers=max(1, (os.cpu_count() or 1) // ctx.local_world_size))
    counts, failed = channel_counts(paths[ctx.rank :: ctx.world_size], config)
    counts = ctx.sum_array(torch.from_numpy(counts)).numpy()
    failed = [f for part in ctx.gather(failed) for f in part]
    distributed.finish(ctx)
    if not ctx.is_main:
        return None
    order = {p: i for i, p in enumerate(paths)}
    failed.sort(key=lambda f: order[f[0]])  # dataset order, as one process counting serially lists them
    if len(failed) == len(paths):
        raise ValueError(
            f"None of the {len(paths)} images could be decoded; check the dataset with `python -m lib inspect`."
        )
    return stats_from_counts(counts, level_values(config), len(paths) - len(failed), failed, config.options())

"""`python -m lib stats SOURCE [--size N] [--json]`: exact per-channel mean and std of a dataset."""

from __future__ import annotations

import json
import sys

from lib.data.index import build_index
from lib.data.sources import cli_root
from lib.pixels.stats import StatsConfig, channel_stats


def register(sub) -> None:
    p = sub.add_parser("stats", help="exact per-channel mean, std, min and max of a dataset")
    p.add_argument("source", help="an ImageFolder folder, a .zip of one, or 'sample'")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize each image to SIZE x SIZE first, as training does (default: native size)",
    )
    p.add_argument("--workers", type=int, default=0, help="processes to decode with (default: 0, every core)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a text summary)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be at least 1, got {args.size}; leave it out for native size.")
    if args.workers < 0:
        raise ValueError(f"--workers must be zero or more, got {args.workers}; 0 uses every core.")
    config = StatsConfig(size=args.size, workers=args.workers)
    index = build_index(str(cli_root(args.source)))
    if index.num_images == 0:
        raise ValueError(f"{args.source} has no usable images; check it with `python -m lib inspect {args.source}`.")
    stats = channel_stats([p for p, _ in index.samples], config)
    if args.json:
        print(json.dumps({"root": index.root, **stats.to_dict()}))
        return 0
    print(f"{index.root}: {stats.num_images:,} images, {stats.num_pixels:,} pixels a channel")
    for name, values in (("mean", stats.mean), ("std", stats.std), ("min", stats.min), ("max", stats.max)):
        print(f"  {name:4} " + "  ".join(f"{v:.6f}" for v in values))
    print(f"  NaN {stats.nan_count}, Inf {stats.inf_count}")
    for path, reason in stats.failed:
        print(f"  failed: {index.relpath(path)}: {reason}", file=sys.stderr)
    return 0

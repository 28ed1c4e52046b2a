"""`python -m lib inspect SOURCE [--json]`: index a folder or .zip, decode every image, report."""

from __future__ import annotations

import json
import sys

from lib.data.index import build_index, verify_index
from lib.data.sources import cli_root


def run(args) -> int:
    index = verify_index(build_index(str(cli_root(args.source))))
    summary = index.summary()
    if args.json:
        print(json.dumps(summary))  # printed even when unusable: it is the report that says why
    if index.num_images == 0:
        raise ValueError(_no_images_message(args.source, index))
    if args.json:
        return 0
    print(f"{summary['root']}: {summary['num_images']} images in {len(summary['classes'])} classes")
    for name, n in summary["counts"].items():
        print(f"  {name}: {n}")
    empty = ", ".join(summary["empty_classes"]) or "none"
    print(f"skipped (not images): {len(summary['skipped_files'])}; empty classes: {empty}")
    print(
        f"special files (pipes, devices, sockets) skipped: {len(summary['special_files'])}; "
        f"unreadable folders: {', '.join(summary['unreadable_folders']) or 'none'}"
    )
    for bad in summary["bad_files"]:
        print(f"  bad: {bad['path']}: {bad['reason']}", file=sys.stderr)
    return 0


def _no_images_message(source: str, index) -> str:
    """One line saying why nothing is usable, with the first bad file as an example."""
    if not index.bad_files:
        return f"{source} has no images in its class folders; put .jpg/.png files in one sub-folder per class."
    first = index.bad_files[0]
    return (
        f"{source} has no usable images ({len(index.bad_files)} bad, e.g. {first.path}: {first.reason}); "
        "replace the bad files and run inspect again."
    )

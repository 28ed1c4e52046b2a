"""`python -m lib runs [--runs-dir DIR] [--json]`: list the runs in the store, newest first."""

from __future__ import annotations

import json

from lib.runs.store import RunStore


def register(sub) -> None:
    p = sub.add_parser("runs", help="list training runs in the run store")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="the run store folder (default: $TORCHSCOPE_RUNS_DIR or ~/.cache/torchscope/runs)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON array of runs (default: a text table)")
    p.set_defaults(func=run)


def run(args) -> int:
    runs = [r.summary() for r in RunStore(args.runs_dir).list_runs()]
    if args.json:
        print(json.dumps(runs))
        return 0
    if not runs:
        print("no runs yet; start one with `python -m lib train sample`")
    for r in runs:
        acc = f"{r['val_accuracy']:.1%}" if r.get("val_accuracy") is not None else "-"
        print(
            f"{r['run_id']}  {r['status']:<11}  {r['config'].get('model', '?'):<8}  epochs {r.get('epoch') or 0:<3}"
            f"  val accuracy {acc}  {r['message']}"
        )
    return 0

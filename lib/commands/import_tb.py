"""`python -m lib import-tb LOGDIR`: every folder of TensorBoard event files under LOGDIR becomes a run.

Tags map to the store's columns by lib/runs/tags.py (documented in docs/logging.md); tensorboard is
imported only when the command runs.
"""

from __future__ import annotations

import json

from lib.commands.transfer import RUNS_DIR_HELP


def register(sub) -> None:
    p = sub.add_parser("import-tb", help="add TensorBoard runs (folders of event files) to the run store")
    p.add_argument("logdir", metavar="LOGDIR", help="the folder TensorBoard reads: one run per folder of event files")
    p.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    p.add_argument(
        "--rename", action="store_true", help="import a folder imported before under a new id (default: refuse)"
    )
    p.add_argument("--json", action="store_true", help='print {"runs": [{"name", "run_id"}]} instead of lines')
    p.set_defaults(func=run)


def run(args) -> int:
    from lib.runs.store import RunStore
    from lib.runs.tensorboard import import_logdir

    ids = import_logdir(args.logdir, RunStore(args.runs_dir), rename=args.rename)
    if args.json:
        print(json.dumps({"runs": [{"name": name, "run_id": run_id} for name, run_id in ids.items()]}))
    else:
        for name, run_id in ids.items():
            print(f"imported {name} as {run_id}")
    return 0

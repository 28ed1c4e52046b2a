"""`python -m lib import-tb LOGDIR`: every folder of TensorBoard event files under LOGDIR becomes a run.

Tags map to the store's columns by lib/runs/tags.py (documented in docs/logging.md); tensorboard is
imported only when the command runs.
"""

from __future__ import annotations

import json


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

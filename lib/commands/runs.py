"""`python -m lib runs [--runs-dir DIR] [--json]`: list the runs in the store, newest first."""

from __future__ import annotations

import json

from lib.charts.numbers import percent
from lib.runs.store import RunStore
from lib.runs.view import runs_table


def run(args) -> int:
    records = RunStore(args.runs_dir).list_runs()
    if args.json:
        print(json.dumps([{**r.summary(), "dataset": r.root} for r in records]))
        return 0
    if not records:
        print("no runs yet; start one with `python -m lib train sample`")
        return 0
    table = runs_table(records)
    table["epoch"] = [f"{r.final.get('epoch') or 0:.0f}/{r.config.get('epochs', '?')}" for r in records]
    table["val accuracy"] = [percent(a) for a in table["val accuracy"]]
    table.insert(0, "id", [r.id for r in records])
    columns = ["id", "run", "dataset", "model", "status", "epoch", "val accuracy", "duration"]
    print(table[columns].to_string(index=False))
    for r in records:
        if r.message and r.status not in ("completed", "running"):
            print(f"{r.id}: {r.message}")
    return 0

"""`python -m lib layers RUN_ID [--runs-dir DIR] [--json]`: what a run's layers did while it trained."""

from __future__ import annotations

import json

from lib.runs.inside import dead_units, layer_norms, layers_json
from lib.runs.rules import findings
from lib.runs.store import RunStore


def run(args) -> int:
    store = RunStore(args.runs_dir)
    if store.get_run(args.run_id) is None:
        raise ValueError(f"No run {args.run_id} in {store.root}; list them with `python -m lib runs`.")
    if args.json:
        print(json.dumps(layers_json(store, args.run_id)))
        return 0
    norms = layer_norms(store, args.run_id)
    if norms.empty:
        print(f"run {args.run_id} recorded no layers (runs trained before layers were recorded have none)")
        return 0
    last = norms[norms["step"] == norms["step"].max()].drop(columns="epoch").set_index("name")
    print(f"step {int(last['step'].iloc[0])}:")
    print(last.drop(columns="step").to_string(float_format=lambda v: f"{v:.3e}"))
    for sentence in findings(norms, dead_units(store, args.run_id)):
        print(sentence)
    return 0

"""`python -m lib models [--json]`: every model a run can train, its size and whether its weights are at hand."""

from __future__ import annotations

import json


def run(args) -> int:
    from lib.training.models import all_model_facts

    facts = all_model_facts()
    if args.json:
        print(json.dumps(facts))
        return 0
    print(f"{'model':<20} {'params':>13} {'size':>5}  weights (* = default file in torch hub's cache)")
    for f in facts:
        mark = "*" if f["cached"] else ""
        print(f"{f['name']:<20} {f['params']:>13,} {f['default_size']:>5}  {', '.join(f['weights'])}{mark}")
    return 0

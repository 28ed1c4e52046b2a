"""`python -m lib health SOURCE [--json] [--folds K] [--model NAME] [--image-size N] [--threshold T] [--run RUN_ID]`:
duplicates, likely wrong labels and outliers of a dataset (lib/health), computed once and stored beside the
cache; with --run, the duplicate groups that span that run's training and validation split (leaks)."""

from __future__ import annotations

import json
import sys

from lib.data.index import build_index
from lib.data.marks import read_marks
from lib.data.sources import cli_root


def run(args) -> int:
    from lib.health.findings import HealthConfig, dataset_findings

    config = HealthConfig(args.folds, args.model, args.image_size, args.threshold)
    index = build_index(str(cli_root(args.source)), marks=False)  # marked files too: they can be unmarked
    if index.num_images == 0:
        raise ValueError(f"{args.source} has no usable images; check it with `python -m lib inspect {args.source}`.")
    findings = dataset_findings(index, config, progress=None if args.json else _print_progress)
    report = findings.report()
    report["marked"] = read_marks(index.root)
    if args.run_id is not None:
        report["leaks"] = run_leaks(args.run_id, args.runs_dir, index.root, findings.duplicates, report["marked"])
    if args.json:
        print(json.dumps(report))
        return 0
    _print_summary(report)
    return 0


def run_leaks(run_id: str, runs_dir: str | None, root: str, groups: list[dict], marked: list[str]) -> list[dict]:
    """Duplicate groups with images in both the run's validation split and its training images.

    Raises:
        ValueError: for an unknown run, one without a checkpoint, or one trained on another dataset.
    """
    from pathlib import Path

    from lib.health.duplicates import leaks
    from lib.runs.store import RunStore

    store = RunStore(runs_dir)
    record = store.get_run(run_id)
    if record is None:
        raise ValueError(f"No run {run_id} in {store.root}; list the runs with `python -m lib runs`.")
    if record.root and Path(record.root).resolve() != Path(root).resolve():
        raise ValueError(f"Run {run_id} trained on {record.root}, not this dataset; name the dataset it trained on.")
    ckpt = store.files.load_checkpoint(run_id, "last")
    left_out = set(marked)  # marked files were in neither split
    kept = []
    for g in groups:
        pairs = [(p, c) for p, c in zip(g["paths"], g["classes"]) if p not in left_out]
        kept.append({**g, "paths": [p for p, _ in pairs], "classes": [c for _, c in pairs]})
    return [{k: g[k] for k in ("kind", "paths", "classes")} for g in leaks(kept, set(ckpt.get("val_paths", [])))]


def _print_progress(done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 10) == 0):
        print(f"checking: {100 * done // total}%", file=sys.stderr, flush=True)


def _print_summary(report: dict) -> None:
    dups = report["duplicates"]
    print(f"{report['root']}: {report['num_images']:,} images")
    print(
        f"duplicate groups: {sum(g['kind'] == 'exact' for g in dups)} exact, {sum(g['kind'] == 'near' for g in dups)} near"
    )
    for g in dups:
        conflict = " (label conflict)" if len(set(g["classes"])) > 1 else ""
        print(f"  {g['kind']}{conflict}: {', '.join(g['paths'])}")
    print(f"likely wrong labels: {len(report['label_issues'])}")
    for issue in report["label_issues"]:
        print(f"  {issue['path']}: labeled {issue['given']}, looks like {issue['suggested']} ({issue['score']:.2f})")
    print(f"outliers: {len(report['outliers'])}")
    for o in report["outliers"]:
        print(f"  {o['path']}: {o['reason']}")
    for note in report["notes"]:
        print(note, file=sys.stderr)
    if "leaks" in report:
        print(f"leaks (duplicates across the run's split): {len(report['leaks'])}")

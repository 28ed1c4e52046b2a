"""`python -m lib export RUN_ID ... --out FILE` and `python -m lib import FILE.zip`: runs out of and into a store.

Export writes the long CSV (`.csv`) or a run bundle (`.zip`); import adds a bundle's runs as they were
(same ids, metrics, config and checkpoint files) and refuses a clash, or a hostile bundle, with one line.
"""

from __future__ import annotations

from pathlib import Path

from lib.runs.export import write_bundle, write_csv
from lib.runs.importer import Limits, import_bundle
from lib.runs.store import RunStore
from lib.settings import load_settings

RUNS_DIR_HELP = "the run store folder (default: $TORCHSCOPE_RUNS_DIR or ~/.cache/torchscope/runs)"


def register(sub) -> None:
    p = sub.add_parser("export", help="write runs' metrics as one long CSV, run bundles or TensorBoard event files")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the runs to export (see `python -m lib runs`)")
    p.add_argument(
        "--out",
        required=True,
        help="FILE.csv for every metric at full resolution, FILE.zip for bundles, DIR for tensorboard",
    )
    p.add_argument(
        "--format",
        choices=("csv", "zip", "tensorboard"),
        default=None,
        help="csv, zip (bundles) or tensorboard (event files in DIR/<run name>); default: from --out's suffix",
    )
    p.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    p.set_defaults(func=export)
    p = sub.add_parser("import", help="add the runs of a bundle (.zip from `export`) to the run store")
    p.add_argument("bundle", help="a .zip written by `python -m lib export ... --out FILE.zip` or the Runs page")
    p.add_argument("--runs-dir", default=None, help=RUNS_DIR_HELP)
    p.add_argument("--rename", action="store_true", help="give a run whose id is taken a new id (default: refuse)")
    p.set_defaults(func=import_)


def export(args) -> int:
    out = Path(args.out)
    store = RunStore(args.runs_dir)
    if args.format == "tensorboard":
        return export_tensorboard(store, args.run_ids, out)
    if out.suffix.lower() not in (".csv", ".zip") or args.format not in (None, out.suffix.lower()[1:]):
        raise ValueError(
            f"--out {out.name} must end in .csv (long metrics CSV) or .zip (run bundles), as --format says;"
            " give a folder with --format tensorboard."
        )
    tmp = out.with_name(out.name + ".part")  # a failed export leaves no half-written file behind
    try:
        if out.suffix.lower() == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                rows = write_csv(store, args.run_ids, f)
            what = f"{rows:,} metric rows"
        else:
            write_bundle(store, args.run_ids, tmp)
            what = "a bundle"
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {what} of {len(set(args.run_ids))} run(s) to {out}")
    return 0


def export_tensorboard(store: RunStore, run_ids: list[str], out: Path) -> int:
    """Event files TensorBoard opens, one folder per run under out."""
    from lib.runs.export import known_runs
    from lib.runs.tensorboard import write_event_files

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out.name} is a file; --format tensorboard writes a folder of runs.")
    folders = write_event_files(store, known_runs(store, run_ids), out)
    print(f"wrote TensorBoard event files of {len(folders)} run(s) to {out} (tensorboard --logdir {out})")
    return 0


def import_(args) -> int:
    settings = load_settings()
    limits = Limits(settings.max_archive_files, settings.max_archive_mb * 2**20)
    ids = import_bundle(args.bundle, RunStore(args.runs_dir), rename=args.rename, limits=limits)
    for old, new in ids.items():
        print(f"imported {old}" + (f" as {new}" if new != old else ""))
    return 0

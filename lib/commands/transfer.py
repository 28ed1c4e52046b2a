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
from lib.training.config import accept_imported_config


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
    ids = import_bundle(
        args.bundle,
        RunStore(args.runs_dir),
        rename=args.rename,
        limits=limits,
        check_config=lambda config: accept_imported_config(config, settings),
    )
    for old, new in ids.items():
        print(f"imported {old}" + (f" as {new}" if new != old else ""))
    return 0

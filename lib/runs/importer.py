"""Runs into the store from a bundle (see lib/runs/export.py for the layout): an upload like any other.

A bundle is untrusted. It is extracted by the dataset archives' rules (no traversal, links or bombs,
file-count and size limits) into a temporary folder inside the runs folder, then every member is
checked before anything reaches the store: only the files the layout names, JSON that parses to the
expected types with numbers in range, metrics that are numbers (at most MAX_METRIC_ROWS per run), configs
that pass the caller's check (the server's limits), and checkpoints that load with `weights_only=True`
into a plain dict whose model state is a dict of tensors and whose validation paths are relative, normalized
and stay inside a dataset folder. The dataset folder a bundle names is another machine's: an imported run
keeps none (its `root` is empty) until its owner picks one they may read, and links only to a parent
imported with it. Any failure refuses the whole bundle with one
sentence and writes nothing; otherwise the checkpoint folders are moved into place and every run,
step and epoch is inserted in one transaction.
"""

from __future__ import annotations

import csv
import json
import math
import re
import secrets
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lib.data.archive import extract_all
from lib.runs.export import BUNDLE_FORMAT, CSV_COLUMNS, JSON_COLUMNS, LOCAL_COLUMNS, MANIFEST
from lib.runs.inside import MAX_BUNDLE_MB, checked_rows, write_rows
from lib.runs.status import Status
from lib.runs.store import RunStore, new_run_id
from lib.runs.sweeps import new_sweep_id
from lib.settings import load_settings

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # also a safe folder name
FILE_TYPES = (".pt", ".json", ".csv", ".npz", ".npy")  # what a checkpoint folder may hold
REQUIRED = {"id": str, "name": str, "created": (int, float), "status": str, "config": dict, "classes": list}
MAX_METRIC_NAME = 200  # characters of an extra metric's name
IMPORTED_RUNNING = "Imported while it was still training; the metrics up to the export are kept."
MAX_INT = 2**53  # integers stay exact in JSON and float, and far inside SQLite's 64 bits
MAX_EPOCH = 1_000_000
MAX_METRIC_ROWS = 200_000  # per run: 100 epochs of 2,000 steps
MAX_CREATED = 2e10  # seconds since 1970: the year 2603
# Columns that mean something only where the run was made: who owned it, which trainer, which dataset folder.
DROPPED = (*LOCAL_COLUMNS, "owner", "visitor", "root")


class IdTaken(ValueError):
    """A bundle refused because one of its run ids is already in the store: importing it with rename adds it."""


@dataclass(frozen=True)
class Limits:
    """How much a bundle may unpack to (the upload rules of lib/settings.Settings)."""

    max_files: int = 10_000
    max_bytes: int = 8 * 2**30


@dataclass
class _Run:
    row: dict
    note: str
    steps: list[tuple]
    epochs: list[tuple]
    metrics: list[tuple]
    folder: Path  # the extracted run folder
    inside: dict[str, list[tuple]]  # its layers' and process's rows (lib/runs/inside.py), when the bundle has them


def import_bundle(
    path: str | Path,
    store: RunStore,
    *,
    rename: bool = False,
    owner: str | None = None,
    limits: Limits = Limits(),
    check_config: Callable[[dict], object] | None = None,
    name: str | None = None,
) -> dict[str, str]:
    """Add the runs of a bundle to the store as they were: same ids, metrics, config and checkpoint files.

    Args:
        path: the bundle (.zip).
        store: the run store to add to.
        rename: give a run whose id is taken a new id instead of refusing the bundle.
        owner: the owner of the imported runs (deployed mode: the visitor's session id); None keeps none.
        limits: the archive limits.
        check_config: raises ValueError for a config this server refuses (lib.training.config.stored_config);
            applied to each run's and each checkpoint's config.
        name: what refusals call the bundle (an upload's own name; default the file's).

    Returns:
        {id in the bundle: id in the store}.

    Raises:
        ValueError: one sentence saying why the bundle was refused (nothing was written); IdTaken when
            the only reason is a run id already in the store.
    """
    name = name or Path(path).name
    tmp = store.root / f".import-{secrets.token_hex(6)}"
    try:
        files = _extract(Path(path), tmp, limits, name)
        runs = _read_bundle(tmp, files, name, check_config or (lambda config: None))
        ids = _new_ids(store, [r.row["id"] for r in runs], rename, name)
        return _add(store, runs, ids, owner)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(path: Path, tmp: Path, limits: Limits, name: str) -> list[tuple[str, ...]]:
    """The bundle's members written under tmp; refusals name the bundle by `name`, never the file read (an
    upload's temporary copy, '.upload-....zip', means nothing to the user)."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ValueError(f"{name} is not a .zip archive (or it is damaged); import a bundle written by Export.")
    try:
        return extract_all(path, tmp, max_files=limits.max_files, max_bytes=limits.max_bytes)
    except ValueError as e:
        raise ValueError(str(e).replace(str(path), name).replace(path.name, name)) from None


def _read_bundle(tmp: Path, files: list[tuple[str, ...]], name: str, check_config: Callable) -> list[_Run]:
    """Check the layout and every member; return the runs in manifest order."""
    manifest = _json(tmp / MANIFEST, name, MANIFEST) if (MANIFEST,) in files else None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{name} is not a Torchscope run bundle ({MANIFEST} is missing or not format 1).")
    ids = manifest.get("runs")
    if not isinstance(ids, list) or not ids or len(set(map(str, ids))) != len(ids):
        raise ValueError(f"{name} was refused: its {MANIFEST} must list each run id once.")
    for run_id in ids:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise ValueError(f"{name} was refused: {str(run_id)[:40]!r} is not a valid run id.")
    for parts in files:
        _check_member(parts, set(ids), name)
    return [_read_run(tmp / run_id, run_id, name, check_config) for run_id in ids]


def _check_member(parts: tuple[str, ...], ids: set[str], name: str) -> None:
    """Refuse any file the layout does not name, or a checkpoint-folder file of a type we do not read."""
    ok = parts == (MANIFEST,) or (
        parts[0] in ids
        and (
            parts[1:] in (("run.json",), ("metrics.csv",), ("inside.json",))
            or (len(parts) == 3 and parts[1] == "checkpoints" and parts[2].endswith(FILE_TYPES))
        )
    )
    if not ok:
        raise ValueError(
            f"{name} was refused: {'/'.join(parts)[:80]!r} is not part of a run bundle "
            f"(checkpoint folders may hold {', '.join(FILE_TYPES)} files only)."
        )


def _read_run(folder: Path, run_id: str, name: str, check_config: Callable) -> _Run:
    """One run's row, note, metrics, with its checkpoint folder's files checked."""
    where = f"{run_id}/run.json"
    row = _json(folder / "run.json", name, where) if (folder / "run.json").is_file() else None
    if not isinstance(row, dict):
        raise ValueError(f"{name} was refused: {where} is missing or not a JSON object.")
    for key, types in REQUIRED.items():
        if not isinstance(row.get(key), types) or isinstance(row.get(key), bool):
            raise ValueError(f"{name} was refused: {where} needs {key!r} of type {_type_name(types)}.")
    if row["id"] != run_id or row["status"] not in set(Status):
        raise ValueError(f"{name} was refused: {where} has the wrong id or an unknown status.")
    # A model file (FILE.py:build, lib.training.config.is_model_file) would run its code on this server.
    if str(row["config"].get("model", "")).rpartition(":")[0].endswith(".py") and load_settings().deployed:
        raise ValueError(
            f"{name} was refused: run {run_id} was trained from a model file, which this server does not run."
        )
    note = row.pop("note", "")
    for key, value in row.items():
        if key not in JSON_COLUMNS and not (value is None or isinstance(value, (str, int, float))):
            raise ValueError(f"{name} was refused: {where} field {key[:40]!r} is not a plain value.")
    if not isinstance(note, str):
        raise ValueError(f"{name} was refused: {where} has a note that is not text.")
    why = _row_problem(row) or _config_problem(row["config"], check_config)
    if why:
        raise ValueError(f"{name} was refused: {where} {why}.")
    steps, epochs, metrics = _read_metrics(folder / "metrics.csv", run_id, name)
    for path in sorted((folder / "checkpoints").glob("*")):
        _check_checkpoint_file(path, f"{run_id}/checkpoints/{path.name}", name, check_config)
    return _Run(row, note, steps, epochs, metrics, folder, _read_inside(folder / "inside.json", run_id, name))


def _read_inside(path: Path, run_id: str, name: str) -> dict[str, list[tuple]]:
    """A run's inside.json as rows (none when the bundle has no such file)."""
    where = f"{run_id}/inside.json"
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_BUNDLE_MB * 2**20:
        raise ValueError(f"{name} was refused: {where} is over {MAX_BUNDLE_MB} MB.")
    data = _json(path, name, where)
    try:
        return checked_rows(data)
    except ValueError as e:
        raise ValueError(f"{name} was refused: {where} is not valid ({str(e)[:120]}).") from None


def _row_problem(row: dict) -> str | None:
    """Why a run's numbers would break the store or a page (not finite, out of range), or None."""
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"has {key[:40]!r} = {value}, not a finite number"
        if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
            return f"has {key[:40]!r} out of range"
    if not 0 <= row["created"] <= MAX_CREATED:
        return "has a 'created' time that is no date"
    if not all(isinstance(c, str) for c in row["classes"]):  # empty: a logged or TensorBoard run has none
        return "needs 'classes' to be a list of class names"
    return None


def _config_problem(config: object, check_config: Callable) -> str | None:
    try:
        check_config(config)
    except ValueError as e:
        return f"has a config this server does not accept ({str(e)[:160]})"
    return None


def _read_metrics(path: Path, run_id: str, name: str) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Step, epoch and extra-metric rows (run id first, as the store's tables) from a run's long CSV,
    at most MAX_METRIC_ROWS in all."""
    where = f"{run_id}/metrics.csv"
    if not path.is_file():
        raise ValueError(f"{name} was refused: {where} is missing.")
    steps, epochs, metrics = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header not in (CSV_COLUMNS, CSV_COLUMNS[:9]):  # 9: written before extra metrics
                raise ValueError("its header is not the long-CSV header")
            for n, row in enumerate(reader):
                if len(row) != len(header) or n >= MAX_METRIC_ROWS:
                    raise ValueError(
                        f"a row has {len(row)} fields, not {len(header)}, or there are over {MAX_METRIC_ROWS:,} rows"
                    )
                rid, kind, step, epoch, train, val_loss, val_acc, lr, sps, metric, value = [*row, "", ""][:11]
                if rid != run_id or kind not in ("step", "epoch", "metric"):
                    raise ValueError(f"a row names run {rid[:40]!r} or kind {kind[:10]!r}")
                epoch = _whole(epoch, MAX_EPOCH)
                if kind == "step":
                    steps.append((run_id, _whole(step, MAX_INT), epoch, _num(train), _num(lr), _num(sps)))
                elif kind == "epoch":
                    epochs.append((run_id, epoch, _num(train), _num(val_loss), _num(val_acc), _num(lr), _num(sps)))
                elif 0 < len(metric) <= MAX_METRIC_NAME:
                    metrics.append((run_id, _whole(step, MAX_INT), epoch, metric, _num(value)))
                else:
                    raise ValueError(f"a metric row has no name or one over {MAX_METRIC_NAME} characters")
    except (ValueError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{name} was refused: {where} is not valid ({str(e)[:80]}).") from None
    return steps, epochs, metrics


def _num(text: str) -> float | None:
    return None if text == "" else float(text)


def _whole(text: str, high: int) -> int:
    """A step or epoch: a whole number from 0 to high (ValueError otherwise)."""
    value = int(text)
    if not 0 <= value <= high:
        raise ValueError(f"a step or epoch of {text[:24]} is out of range")
    return value


def _check_checkpoint_file(path: Path, where: str, name: str, check_config: Callable) -> None:
    """Load each file the way its readers will, refusing anything that is not plain data."""
    why = None
    try:
        if path.suffix == ".pt":
            why = _checkpoint_problem(path, check_config)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv":
            path.read_text(encoding="utf-8")
        else:
            _load_numpy(path)
    except Exception as e:  # noqa: BLE001 - any failure to read untrusted data refuses it
        why = f"it does not load as plain data ({type(e).__name__})"
    if why:
        raise ValueError(f"{name} was refused: {where}: {why}.")


def _load_numpy(path: Path) -> None:
    """Read every array of a .npy/.npz without pickle (an object array raises)."""
    import numpy as np

    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            for key in loaded.files:
                loaded[key]


def _checkpoint_problem(path: Path, check_config: Callable) -> str | None:
    """Why a .pt file is not a plain checkpoint (weights_only load, dict, model state of tensors), or None."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if path.stem not in ("last", "best"):  # another stored file (predictions): plain data is enough
        return None if isinstance(ckpt, (dict, torch.Tensor)) else "it is not a dict or tensor"
    if not isinstance(ckpt, dict):
        return "it is not a checkpoint dict"
    state = ckpt.get("model", ckpt.get("model_state"))
    if not isinstance(state, dict) or not state:
        return "it holds no model state dict"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return "its model state holds something other than named tensors"
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("classes"), list):
        return "it lacks the config or the classes"
    return _config_problem(ckpt["config"], check_config) or _split_problem(ckpt)


def _split_problem(ckpt: dict) -> str | None:
    """Why a checkpoint's validation split could read outside a dataset folder, or does not fit its classes."""
    paths, targets = ckpt.get("val_paths", []), ckpt.get("val_targets", [])
    if not isinstance(paths, list) or not isinstance(targets, list) or len(paths) != len(targets):
        return "its val_paths and val_targets are not two lists of one length"
    bad = next((p for p in paths if not _inside(p)), None)
    if bad is not None:
        return f"its validation path {str(bad)[:80]!r} is not a plain relative path inside a dataset folder"
    if len(set(paths)) != len(paths):
        return "its validation paths repeat"
    n = len(ckpt["classes"])
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n for t in targets):
        return "its val_targets are not class indices"
    return None


def _inside(path: object) -> bool:
    """Whether path is relative, normalized POSIX text: no `..`, `.`, empty or absolute parts, no backslash."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path or ":" in path.split("/")[0]:
        return False
    parts = PurePosixPath(path).parts
    return not PurePosixPath(path).is_absolute() and "/".join(parts) == path and not {"..", "."} & set(parts)


def _json(path: Path, name: str, where: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: math.nan)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{name} was refused: {where} is not valid JSON.") from None


def _type_name(types) -> str:
    return " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__


def _new_ids(store: RunStore, ids: list[str], rename: bool, name: str) -> dict[str, str]:
    """{bundle id: store id}: the same id, or a new one for a taken id when renaming is asked for."""
    out = {}
    for run_id in ids:
        taken = store.run_row(run_id) is not None or store.files.folder(run_id).exists()
        if taken and not rename:
            raise IdTaken(
                f"{name} was refused: run {run_id} is already in {store.root}; "
                "import with --rename (in the app: tick 'Give runs whose id is taken a new id') to add it under a new id."
            )
        out[run_id] = new_run_id() if taken else run_id
    return out


def _add(store: RunStore, runs: list[_Run], ids: dict[str, str], owner: str | None) -> dict[str, str]:
    """Move the checkpoint folders into place, then insert every run in one transaction (undone on failure)."""
    moved = []
    try:
        for run in runs:
            src, dest = run.folder / "checkpoints", store.files.folder(ids[run.row["id"]])
            if src.is_dir():
                dest.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dest)  # same file system: the temp folder is inside the runs folder
                moved.append(dest)
        rows = [_store_row(store, run, ids, owner) for run in runs]
        mark_copies(store, rows, {new for old, new in ids.items() if new != old})
        store.insert_runs(
            rows,
            [(ids[s[0]], *s[1:]) for run in runs for s in run.steps],
            [(ids[e[0]], *e[1:]) for run in runs for e in run.epochs],
            {ids[run.row["id"]]: run.note for run in runs},
            [(ids[m[0]], *m[1:]) for run in runs for m in run.metrics],
        )
    except BaseException:
        for dest in moved:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    for run in runs:  # after the runs' own transaction: a failure here leaves the runs whole, without these
        for kind, rows in run.inside.items():
            write_rows(store, ids[run.row["id"]], kind, rows)
    return ids


def mark_copies(store: RunStore, rows: list[dict], copies: set[str]) -> None:
    """Tell the rows of renamed runs (ids in `copies`: copies of runs already here) from their originals.

    Each copy's name gets the first free number ('baseline (2)', then 'baseline (3)'), so no two rows read
    the same; each sweep with a copy in it gets a fresh id, the same for all its runs in this import, so the
    sweep here counts its own runs only (never '6 of 4 runs finished') and the copies stay one sweep.
    """
    taken = {r.name for r in store.list_runs()} | {row["name"] for row in rows if row["id"] not in copies}
    sweeps = {row["sweep"]: new_sweep_id() for row in rows if row["id"] in copies and row.get("sweep")}
    for row in rows:
        if row["id"] in copies and row["name"] != row["id"]:  # a run named by its id has a new id as its name
            row["name"] = copy_name(row["name"], taken)
            taken.add(row["name"])
        if row.get("sweep") in sweeps:
            row["sweep"] = sweeps[row["sweep"]]


def copy_name(name: str, taken: set[str]) -> str:
    """`name (n)` with the first n from 2 that no name in `taken` has; a copy of 'x (2)' is 'x (3)'."""
    numbered = re.fullmatch(r"(.*) \((\d{1,3})\)", name)
    base, n = (numbered[1], int(numbered[2]) + 1) if numbered else (name, 2)
    while f"{base} ({n})" in taken:
        n += 1
    return f"{base} ({n})"


def _store_row(store: RunStore, run: _Run, ids: dict[str, str], owner: str | None) -> dict:
    """The runs-table row for an imported run: its id mapped, owner set, and no live trainer claimed."""
    row = {k: (json.dumps(v) if k in JSON_COLUMNS else v) for k, v in run.row.items() if k not in DROPPED}
    old, new = row["id"], ids[row["id"]]
    row.update(id=new, owner=owner, root="", name=new if row["name"] in ("", old) else row["name"])
    # A parent imported in the same bundle keeps its link; any other id may be someone else's run here.
    row["parent"] = ids.get(row.get("parent"))
    if row["status"] == Status.RUNNING:
        row.update(status=str(Status.INTERRUPTED), message=IMPORTED_RUNNING)
    last = store.files.checkpoint_path(new)
    row["checkpoint"] = str(last) if last.exists() else None
    return row


def pick_dataset(store: RunStore, run_id: str, root: str | Path) -> None:
    """Set the dataset folder an imported run is evaluated on (one its owner may read: the caller's
    choice), dropping predictions stored for another folder so they are made again from this one."""
    store.update_run(run_id, root=str(Path(root).resolve()))
    for which in ("last", "best"):
        store.files.predictions_path(run_id, which).unlink(missing_ok=True)

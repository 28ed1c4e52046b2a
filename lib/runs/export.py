"""Runs out of the store: every metric at full resolution as one long CSV, and run bundles (.zip).

The long CSV has one row per recorded step (kind `step`) and one per finished epoch (kind `epoch`):

    run_id, kind, step, epoch, train_loss, val_loss, val_accuracy, lr, samples_per_sec, metric, value

then one row per value of an extra metric (kind `metric`: a logged or imported run's other metrics,
named in `metric`, its step, epoch and `value`; the store's columns left empty). Bundles written
before extra metrics had the first nine columns only; import reads both.
Step rows leave val_loss and val_accuracy empty, as is any value the store holds as NULL (SQLite keeps
a NaN loss as NULL); an epoch row's step is the last step recorded in that
epoch (empty when none was). Floats are written with Python's shortest round-trip repr, so reading them
back with float() gives the stored values bit for bit.

A bundle holds one or more runs, each as it is in the store:

    torchscope-bundle.json         {"format": 1, "runs": [run_id, ...]}
    <run_id>/run.json              the run's row of the runs table (config and classes as JSON) and its note
    <run_id>/metrics.csv           the run's rows of the long CSV
    <run_id>/inside.json           what its layers and process did, when recorded: {kind: [row, ...]} for
                                   norms, histograms, dead_units, machine (lib/runs/inside.py's bundle_rows)
    <run_id>/checkpoints/<file>    every file of the run's checkpoint folder (last.pt, best.pt, predictions)
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lib.runs.inside import bundle_rows
from lib.runs.store import RunStore

CSV_COLUMNS = [
    "run_id", "kind", "step", "epoch", "train_loss", "val_loss", "val_accuracy", "lr", "samples_per_sec", "metric", "value",
]  # fmt: skip
MANIFEST = "torchscope-bundle.json"
BUNDLE_FORMAT = 1
JSON_COLUMNS = ("config", "classes")  # stored as JSON text in the runs table, written as JSON values
# Rebuilds a checkpoint's model in plain torch (shown beside the checkpoint download and in docs/cli.md;
# tests/test_runs_transfer.py runs it for every model). `{file}` is the checkpoint's file name.
PLAIN_TORCH = """import torch
import torchvision
from torch import nn

ckpt = torch.load("{file}", map_location="cpu", weights_only=True)
name, config = ckpt["config"]["model"], ckpt["config"]
n, size = len(ckpt["classes"]), config["image_size"]


def block(cin, cout):  # the "cnn" model's conv block
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


small = {{
    "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, n)),
    "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 256), nn.ReLU(), nn.Linear(256, n)),
    "cnn": lambda: nn.Sequential(
        *block(3, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.MaxPool2d(2),
        *block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, n),
    ),
}}
if name in small:
    model = small[name]()
else:  # a torchvision classifier with n classes (a model file: build(n) from that file instead)
    pretrained = bool(config.get("weights") or config.get("pretrained"))
    extra = {{}}
    if name in ("googlenet", "inception_v3"):  # without auxiliary heads; pretrained ones transform their input
        extra = dict(aux_logits=False, init_weights=False, transform_input=pretrained)
    if name.startswith("vit_") and not pretrained:
        extra = dict(image_size=size)
    model = torchvision.models.get_model(name, num_classes=n, **extra)
model.load_state_dict(ckpt["model"])
model.eval()  # input: (B, 3, size, size) floats in [0, 1], minus ckpt["mean"], divided by ckpt["std"]
# Each image resized as the run's were: config.get("resize") "weights" is torchvision's
# Resize(round(config["resize_size"] * size / config["crop_size"]), config["interpolation"]) then CenterCrop(size);
# otherwise Resize((size, size)).
"""
LOCAL_COLUMNS = ("pid", "host", "heartbeat", "stop_requested", "checkpoint")  # facts of the machine that ran it
SERVER_FACTS = ("root", "owner", "visitor")  # a deployed server's folders and its visitors' session ids


def metric_rows(store: RunStore, run_id: str) -> Iterator[list]:
    """The long-CSV rows of one run: its steps in order, then its epochs, then its extra metrics by name."""
    steps, epochs = store.steps(run_id), store.epochs(run_id)
    for s in steps.itertuples(index=False):
        yield [run_id, "step", int(s.step), int(s.epoch), s.train_loss, None, None, s.lr, s.samples_per_sec, None, None]
    last = steps.groupby("epoch")["step"].max() if len(steps) else {}
    for e in epochs.itertuples(index=False):
        step = int(last[e.epoch]) if e.epoch in last else None
        yield [run_id, "epoch", step, int(e.epoch), e.train_loss, e.val_loss, e.val_accuracy, e.lr, e.samples_per_sec,
               None, None]  # fmt: skip
    for m in store.metrics(run_id).itertuples(index=False):
        yield [run_id, "metric", int(m.step), int(m.epoch), None, None, None, None, None, m.name, m.value]


def write_csv(store: RunStore, run_ids: Iterable[str], out: io.TextIOBase) -> int:
    """Write the long CSV of run_ids to a text stream; returns the number of data rows.

    Raises:
        ValueError: for a run id the store does not have.
    """
    run_ids = known_runs(store, run_ids)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    n = 0
    for run_id in run_ids:
        for row in metric_rows(store, run_id):
            writer.writerow(["" if v is None or v != v else v for v in row])  # NaN: SQLite stored NULL
            n += 1
    return n


def csv_bytes(store: RunStore, run_ids: Iterable[str]) -> bytes:
    """The long CSV of run_ids, UTF-8 encoded (for a download button)."""
    buf = io.StringIO()
    write_csv(store, run_ids, buf)
    return buf.getvalue().encode()


def write_bundle(
    store: RunStore, run_ids: Iterable[str], out: str | Path | io.BufferedIOBase, *, private: bool = False
) -> None:
    """Write a bundle of run_ids (see the module docstring) to a path or binary stream. `private` (deployed
    mode) leaves out what names the server or its visitors: the dataset folder and the session ids.

    Raises:
        ValueError: for a run id the store does not have.
    """
    run_ids = known_runs(store, run_ids)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps({"format": BUNDLE_FORMAT, "runs": run_ids}, indent=1))
        for run_id in run_ids:
            row = {k: v for k, v in run_json(store, run_id).items() if not (private and k in SERVER_FACTS)}
            zf.writestr(f"{run_id}/run.json", json.dumps(row, indent=1))
            buf = io.StringIO()
            write_csv(store, [run_id], buf)
            zf.writestr(f"{run_id}/metrics.csv", buf.getvalue())
            if inside := bundle_rows(store, run_id):
                zf.writestr(f"{run_id}/inside.json", json.dumps(inside, allow_nan=False))
            for name, path in checkpoint_files(store, run_id).items():
                if private and name in ("last.pt", "best.pt"):
                    zf.writestr(f"{run_id}/checkpoints/{name}", checkpoint_bytes(path, private=True))
                else:
                    zf.write(path, f"{run_id}/checkpoints/{name}")


def bundle_bytes(store: RunStore, run_ids: Iterable[str], *, private: bool = False) -> bytes:
    """A bundle of run_ids in memory (for a download button)."""
    buf = io.BytesIO()
    write_bundle(store, run_ids, buf, private=private)
    return buf.getvalue()


def checkpoint_bytes(path: Path, *, private: bool = False) -> bytes:
    """A checkpoint file's bytes; `private`: with its dataset folder (`root`, a server path) left empty."""
    if not private:
        return path.read_bytes()
    import torch

    buf = io.BytesIO()
    torch.save({**torch.load(path, map_location="cpu", weights_only=True), "root": ""}, buf)
    return buf.getvalue()


def run_json(store: RunStore, run_id: str) -> dict:
    """A run's row as stored, less the columns that only mean something on the machine that ran it."""
    row = store.run_row(run_id) or {}
    out = {k: v for k, v in row.items() if k not in LOCAL_COLUMNS}
    for key in JSON_COLUMNS:
        out[key] = json.loads(out.get(key) or ("{}" if key == "config" else "[]"))
    out["note"] = store.aggregates([run_id]).get(run_id, {}).get("note") or ""
    return out


def checkpoint_files(store: RunStore, run_id: str) -> dict[str, Path]:
    """{file name: path} of every file in a run's checkpoint folder (a legacy single file as last.pt)."""
    folder = store.files.folder(run_id)
    files = {p.name: p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    legacy = store.root / "checkpoints" / f"{run_id}.pt"
    if "last.pt" not in files and legacy.is_file():
        files["last.pt"] = legacy
    return {k: v for k, v in files.items() if not k.endswith(".tmp")}  # a save in progress is not a file yet


def known_runs(store: RunStore, run_ids: Iterable[str]) -> list[str]:
    run_ids = list(dict.fromkeys(run_ids))
    if not run_ids:
        raise ValueError("No runs to export; give at least one run id (list them with `python -m lib runs`).")
    missing = [r for r in run_ids if store.run_row(r) is None]
    if missing:
        raise ValueError(f"No run {missing[0]} in {store.root}; list the runs with `python -m lib runs`.")
    return run_ids

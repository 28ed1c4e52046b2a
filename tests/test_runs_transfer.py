"""Export and import: the long CSV at full resolution, bundles that round-trip runs exactly, hostile bundles refused."""

import csv
import io
import json
import sqlite3
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_archive import raw_zip

from lib.data.sample import sample_root
from lib.runs import compare
from lib.runs.export import CSV_COLUMNS, PLAIN_TORCH, bundle_bytes, csv_bytes
from lib.runs.importer import IdTaken, Limits, copy_name, import_bundle
from lib.runs.inside import write_rows
from lib.runs.store import RunStore
from lib.runs.sweeps import create_sweep, finish_sweep, sweep_runs
from lib.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--model", "linear", "--epochs", "2", "--max-batches", "3", "--batch-size", "16", "--image-size", "8"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[str]]:
    """A store with one trained run (real checkpoints) and one long synthetic run with a note and a new name."""
    folder = tmp_path_factory.mktemp("src") / "runs"
    done = cli("train", str(sample_root()), *TRAIN, "--runs-dir", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    trained = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    store = RunStore(folder)
    long = store.create_run({"model": "mlp", "lr": 0.1, "epochs": 2}, classes=["a", "b"], name="long one")
    writer = store.step_writer(long)
    for step in range(1, 2001):
        writer.step(step, 1 + (step > 1000), 1 / step, 0.1 * 0.999**step, 1000.0 + step % 7)
    writer.close()
    store.record_epoch(long, 1, 0.5, 0.6, 0.7, 0.1, 900.0)
    store.record_epoch(long, 2, 0.25, float("nan"), 0.75, 0.01, 950.0)
    store.finish(long, "stopped", "Stopped on request.")
    store.set_note(long, "lr 0.1 *too* high? [x](http://e.x)")
    write_rows(store, long, "dead_units", [(1, "features.1", 0.25, 64), (2, "features.1", 0.5, 64)])  # linear has none
    store.rename_run(trained, "baseline")
    store.files.save_predictions(trained, {"predicted": np.arange(4), "paths": np.array(["a/1.png", "b/2.png"])})
    return folder, [trained, long]


def table(folder: Path, sql: str) -> list[tuple]:
    """Rows straight from the SQLite file: the reference the export is checked against."""
    with sqlite3.connect(folder / "runs.sqlite") as con:
        return [tuple(r) for r in con.execute(sql)]


def num(text: str) -> float | None:
    return float(text) if text else None  # an empty cell is a NULL in the store (SQLite keeps NaN so)


def same(a: list[tuple], b: list[tuple]) -> bool:
    """Row lists equal, NaN equal to NaN (the store keeps a diverged run's NaN loss)."""
    return len(a) == len(b) and all(repr(x) == repr(y) for x, y in zip(a, b))


def test_long_csv_has_a_row_per_recorded_step_and_epoch_at_full_resolution(runs, tmp_path):
    folder, ids = runs
    out = tmp_path / "m.csv"
    done = cli("export", *ids, "--out", str(out), "--runs-dir", str(folder))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == CSV_COLUMNS
    for run_id in ids:
        steps = table(folder, f"SELECT step, train_loss, lr, samples_per_sec FROM steps WHERE run_id='{run_id}'")
        got = [r for r in rows if r["run_id"] == run_id and r["kind"] == "step"]
        assert len(got) == len(steps) == table(folder, f"SELECT COUNT(*) FROM steps WHERE run_id='{run_id}'")[0][0]
        assert [(int(r["step"]), float(r["train_loss"]), float(r["lr"]), float(r["samples_per_sec"])) for r in got] == [
            tuple(s) for s in sorted(steps)
        ]  # bit for bit: repr floats round-trip
        epochs = table(
            folder, f"SELECT epoch, val_loss, val_accuracy FROM epochs WHERE run_id='{run_id}' ORDER BY epoch"
        )
        got = [(int(r["epoch"]), num(r["val_loss"]), num(r["val_accuracy"])) for r in rows if r["kind"] == "epoch"
               and r["run_id"] == run_id]  # fmt: skip
        assert same(got, epochs)
    assert sum(r["kind"] == "step" for r in rows) == 2000 + 6  # the trained run: 2 epochs x 3 batches


# What the trained run's layers and process did (lib/runs/inside.py): carried by its bundle as they are.
INSIDE_TABLES = (
    "SELECT * FROM layer_norms ORDER BY run_id, step, name",
    "SELECT * FROM layer_histograms ORDER BY run_id, epoch, name, which",
    "SELECT * FROM dead_units ORDER BY run_id, epoch, name",
    "SELECT * FROM machine ORDER BY run_id, time",
)


def test_bundle_round_trips_runs_into_an_empty_folder_exactly(runs, tmp_path):
    folder, ids = runs
    bundle, empty = tmp_path / "b.zip", tmp_path / "empty"
    assert cli("export", *ids, "--out", str(bundle), "--runs-dir", str(folder)).returncode == 0
    done = cli("import", str(bundle), "--runs-dir", str(empty))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"imported {i}" for i in ids]
    cols = "id, name, created, config, fingerprint, classes, status, message, ended, total_steps"
    for sql in (
        f"SELECT {cols} FROM runs ORDER BY id",
        "SELECT * FROM steps ORDER BY run_id, step",
        "SELECT * FROM epochs ORDER BY run_id, epoch",
        "SELECT * FROM notes ORDER BY run_id",
        *INSIDE_TABLES,
    ):
        assert same(table(empty, sql), table(folder, sql)), sql
    assert all(table(folder, f"SELECT COUNT(*) FROM ({sql})")[0][0] for sql in INSIDE_TABLES)  # none empty
    src = sorted(p.relative_to(folder) for p in (folder / "checkpoints").rglob("*") if p.is_file())
    assert {p.name for p in src} >= {"last.pt", "best.pt", "predictions-last.npz"}
    assert src == sorted(p.relative_to(empty) for p in (empty / "checkpoints").rglob("*") if p.is_file())
    assert all((folder / p).read_bytes() == (empty / p).read_bytes() for p in src)
    loaded = load_model(ids[0], runs_dir=empty)  # the imported checkpoint rebuilds the model
    original = torch.load(folder / "checkpoints" / ids[0] / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, original[k]) for k, v in loaded.model.state_dict().items())
    assert RunStore(empty).get_run(ids[0]).checkpoint == str(empty / "checkpoints" / ids[0] / "last.pt")
    assert table(empty, "SELECT DISTINCT root FROM runs") == [("",)]  # the folder was the exporting machine's


def test_a_clash_is_refused_in_one_line_or_renamed_when_asked(runs, tmp_path):
    folder, ids = runs
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(bundle_bytes(RunStore(folder), ids[:1]))
    before = table(folder, "SELECT COUNT(*) FROM runs")
    done = cli("import", str(bundle), "--runs-dir", str(folder))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "already in" in done.stderr and "--rename" in done.stderr
    # The app's own option, by the label the Runs page shows (it named a "Rename option" that does not exist).
    assert "'Give runs whose id is taken a new id'" in done.stderr and "Rename option" not in done.stderr
    assert table(folder, "SELECT COUNT(*) FROM runs") == before
    copy = tmp_path / "copy"
    import_bundle(bundle, RunStore(copy))
    mapping = import_bundle(bundle, RunStore(copy), rename=True, owner="abc")
    new = mapping[ids[0]]
    assert new != ids[0] and {r.id for r in RunStore(copy).list_runs()} == {ids[0], new}
    record = RunStore(copy).get_run(new)
    assert record.owner == "abc" and record.name == "baseline (2)"  # twin rows never read alike
    assert (copy / "checkpoints" / new / "last.pt").read_bytes() == (
        folder / "checkpoints" / ids[0] / "last.pt"
    ).read_bytes()


def sweep_store(folder: Path) -> tuple[RunStore, str, list[str]]:
    """A finished sweep of two runs: lr 0.01 (val accuracy 0.6) and lr 0.1 (0.8, the winner)."""
    store = RunStore(folder)
    sweep = create_sweep(store, {"model": "mlp"}, [["lr", [0.01, 0.1]]], 2, root="/data", owner=None)
    ids = []
    for lr, accuracy in ((0.01, 0.6), (0.1, 0.8)):
        run_id = store.create_run({"model": "mlp", "lr": lr}, root="/data", name=f"lr {lr}", sweep=sweep)
        store.record_epoch(run_id, 1, 0.5, 0.4, accuracy, lr, 100.0)
        store.finish(run_id, "completed")
        ids.append(run_id)
    finish_sweep(store, sweep, "completed")
    return store, sweep, ids


def test_renamed_copies_form_their_own_sweep_and_read_apart_by_name(tmp_path):
    store, sweep, ids = sweep_store(tmp_path / "runs")
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(bundle_bytes(store, ids))
    first, second = (import_bundle(bundle, store, rename=True) for _ in range(2))
    runs = {r.id: r for r in store.list_runs()}
    copies = [{runs[mapping[i]].sweep for i in ids} for mapping in (first, second)]
    # Each import is one sweep of its own two runs, apart from the original and from the other import.
    assert all(len(c) == 1 for c in copies) and len({sweep} | copies[0] | copies[1]) == 3
    assert all(c.pop().startswith("sweep-") for c in copies)
    assert [r.id for r in sweep_runs(store, sweep)] == ids  # the original counts 2 of its 2 runs, not 6
    assert sorted(r.name for r in runs.values()) == [
        "lr 0.01", "lr 0.01 (2)", "lr 0.01 (3)", "lr 0.1", "lr 0.1 (2)", "lr 0.1 (3)",
    ]  # fmt: skip
    # One winner per sweep, by the accuracies recorded above: lr 0.1 in each.
    assert compare.sweep_winners(list(runs.values())) == {ids[1], first[ids[1]], second[ids[1]]}


def test_a_bundle_imported_without_clash_keeps_its_sweep_and_names(tmp_path):
    store, sweep, ids = sweep_store(tmp_path / "runs")
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(bundle_bytes(store, ids))
    other = RunStore(tmp_path / "other")
    assert import_bundle(bundle, other, rename=True) == {i: i for i in ids}
    assert {(r.sweep, r.name) for r in other.list_runs()} == {(sweep, "lr 0.01"), (sweep, "lr 0.1")}


def test_copy_names_count_on_from_the_first_free_number():
    assert copy_name("x", {"x"}) == "x (2)"
    assert copy_name("x", {"x", "x (2)"}) == "x (3)"
    assert copy_name("x (2)", {"x", "x (2)"}) == "x (3)"  # a copy of a copy: not "x (2) (2)"
    assert copy_name("net (2019)", {"net (2019)"}) == "net (2019) (2)"  # four digits are the name's own


def test_a_refusal_names_the_bundle_as_uploaded_never_the_servers_copy(runs, tmp_path):
    folder, ids = runs
    upload = tmp_path / ".upload-0123abcd.zip"  # how the Runs page stores an upload while it imports it
    cases = {
        b"not a zip at all": "is not a .zip archive",
        raw_zip(tmp_path / "x.zip", "x", b"", declared=0, crc=0).read_bytes()[:-4]: "is not a .zip archive",
        write_zip(tmp_path / "l.zip", members(folder, ids[0]), symlink="a/b").read_bytes(): "symbolic link",
        bundle_bytes(RunStore(folder), ids[:1]): "already in",
    }
    for data, why in cases.items():
        upload.write_bytes(data)
        with pytest.raises(ValueError, match=why) as e:
            import_bundle(upload, RunStore(folder), name="my runs.zip")
        assert str(e.value).startswith("my runs.zip ") and ".upload-" not in str(e.value), str(e.value)
    assert isinstance(e.value, IdTaken)  # the one refusal that importing with rename would accept


def test_csv_bytes_of_an_unknown_run_says_which(runs):
    with pytest.raises(ValueError, match="No run nope"):
        csv_bytes(RunStore(runs[0]), ["nope"])


# --- hostile bundles: refused with one sentence, nothing written --------------------------------------


def members(folder: Path, run_id: str) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle_bytes(RunStore(folder), [run_id]))) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def pt_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def npz_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=array)  # an object array is pickled inside the .npz
    return buf.getvalue()


class Evil:
    """Any class: unpickling it needs code, so weights_only refuses it."""


def hostile(folder: Path, run_id: str, case: str) -> dict[str, bytes | None]:
    m = members(folder, run_id)
    ckpt = f"{run_id}/checkpoints/last.pt"
    good = torch.load(io.BytesIO(m[ckpt]), weights_only=True)
    edits = {
        "traversal": {f"{run_id}/../../evil.json": b"{}"},
        "absolute": {"/tmp/evil.json": b"{}"},
        "unexpected file": {f"{run_id}/run.sh": b"rm -rf /"},
        "wrong type in checkpoints": {f"{run_id}/checkpoints/model.exe": b"MZ"},
        "pickled object": {ckpt: pt_bytes({**good, "extra": Evil()})},
        "not a dict": {ckpt: pt_bytes([good["model"]])},
        "model state not tensors": {ckpt: pt_bytes({**good, "model": {"w": "text"}})},
        "not a checkpoint at all": {ckpt: b"PK\x03\x04 not torch"},
        "pickled predictions": {f"{run_id}/checkpoints/predictions-last.npz": npz_bytes(np.array([Evil()]))},
        "bad status": {
            f"{run_id}/run.json": json.dumps({**json.loads(m[f"{run_id}/run.json"]), "status": "x"}).encode()
        },
        "bad metrics": {f"{run_id}/metrics.csv": b"run_id,kind\n"},
        "inside text for a norm": {f"{run_id}/inside.json": b'{"norms": [[1, 1, "fc.weight", "big", 0.1, 1e-3]]}'},
        "inside NaN time": {f"{run_id}/inside.json": b'{"machine": [[NaN, 1, 50.0, 100.0, null, null]]}'},
        "inside unknown kind": {f"{run_id}/inside.json": b'{"secrets": []}'},
        "inside short histogram": {f"{run_id}/inside.json": b'{"histograms": [[1, "w", "grad", [0, 1], [3, 4]]]}'},
        "no manifest": {"torchscope-bundle.json": None},
        "bad run id": {"torchscope-bundle.json": b'{"format": 1, "runs": ["../x"]}'},
    }[case]
    return {k: v for k, v in {**m, **edits}.items() if v is not None}


def write_zip(path: Path, files: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def assert_refused_cleanly(path: Path, dest: Path, match: str, **kw) -> None:
    with pytest.raises(ValueError, match=match) as e:
        import_bundle(path, RunStore(dest), **kw)
    assert "\n" not in str(e.value)
    assert table(dest, "SELECT COUNT(*) FROM runs") == [(0,)]
    # SQLite's -wal/-shm files exist only while some connection is open (garbage collection decides): not counted.
    assert {p.name for p in dest.iterdir()} - {"runs.sqlite-shm", "runs.sqlite-wal"} == {"runs.sqlite"}


CASES = {
    "traversal": "'\\.\\.' path component",
    "absolute": "absolute",
    "unexpected file": "not part of a run bundle",
    "wrong type in checkpoints": "not part of a run bundle",
    "pickled object": "does not load as plain data",
    "not a dict": "not a checkpoint dict",
    "model state not tensors": "other than named tensors",
    "not a checkpoint at all": "does not load as plain data",
    "pickled predictions": "does not load as plain data",
    "bad status": "unknown status",
    "bad metrics": "metrics.csv is not valid",
    "inside text for a norm": "inside.json is not valid \\(a norms row has 'big' where a number belongs",
    "inside NaN time": "inside.json is not valid \\(a machine row has 'nan' where a time belongs",
    "inside unknown kind": "inside.json is not valid \\(it must be an object with keys among",
    "inside short histogram": "inside.json is not valid \\(a histogram needs one edge more than it has counts",
    "no manifest": "not a Torchscope run bundle",
    "bad run id": "not a valid run id",
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_bundle_refused_and_nothing_written(runs, tmp_path, case):
    folder, ids = runs
    path = write_zip(tmp_path / "h.zip", hostile(folder, ids[0], case))
    assert_refused_cleanly(path, tmp_path / "dest", CASES[case])


def test_an_inside_json_over_its_size_is_refused_before_it_is_read(runs, tmp_path, monkeypatch):
    from lib.runs import importer

    folder, ids = runs
    monkeypatch.setattr(importer, "MAX_BUNDLE_MB", 1)
    files = {**members(folder, ids[0]), f"{ids[0]}/inside.json": b" " * (2**20 + 1)}  # blank: valid JSON? no matter
    assert_refused_cleanly(write_zip(tmp_path / "h.zip", files), tmp_path / "dest", "inside.json is over 1 MB")


def test_symlink_member_refused(runs, tmp_path):
    folder, ids = runs
    path = write_zip(tmp_path / "h.zip", members(folder, ids[0]), symlink=f"{ids[0]}/checkpoints/link.pt")
    assert_refused_cleanly(path, tmp_path / "dest", "symbolic link")


def test_bomb_and_limits_refused(runs, tmp_path):
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(bytes(64 * 2**20)) + comp.flush()  # 64 MiB of zeros declared as 1 KiB
    bomb = raw_zip(tmp_path / "bomb.zip", "x/run.json", stream, declared=1024, crc=zlib.crc32(bytes(1024)))
    assert_refused_cleanly(bomb, tmp_path / "dest", "inflates past its declared")
    folder, ids = runs
    path = write_zip(tmp_path / "big.zip", members(folder, ids[1]))
    assert_refused_cleanly(path, tmp_path / "dest", "over the limit of 2", limits=Limits(max_files=2))
    assert_refused_cleanly(path, tmp_path / "dest", "over the limit", limits=Limits(max_bytes=1000))


def test_export_refuses_an_unknown_suffix_in_one_line(runs, tmp_path):
    done = cli("export", runs[1][0], "--out", str(tmp_path / "x.txt"), "--runs-dir", str(runs[0]))
    assert done.returncode == 2 and "must end in .csv" in done.stderr and not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize(
    "name, size, weights",
    [("linear", 16, ""), ("mlp", 16, ""), ("cnn", 16, ""), ("resnet18", 16, ""), ("squeezenet1_1", 17, ""),
     ("mobilenet_v3_small", 16, ""), ("googlenet", 32, "IMAGENET1K_V1"), ("densenet121", 32, "")],
)  # fmt: skip
def test_plain_torch_snippet_rebuilds_every_model(tmp_path, name, size, weights):
    from lib.training.models import build_model

    reference = build_model(name, 3, size, weights=weights, load=False)  # the architecture pretrained runs have
    path = tmp_path / "x-last.pt"
    config = {"model": name, "image_size": size, "weights": weights}
    torch.save({"model": reference.state_dict(), "config": config, "classes": list("abc")}, path)
    scope: dict = {}
    exec(PLAIN_TORCH.format(file=path), scope)  # noqa: S102 - our own snippet, as a user would paste it
    rebuilt = scope["model"].state_dict()
    assert list(rebuilt) == list(reference.state_dict())
    assert all(torch.equal(rebuilt[k], v) for k, v in reference.state_dict().items())
    x = torch.rand(2, 3, size, size)
    assert torch.equal(scope["model"](x), reference.eval()(x))
    cli = (ROOT / "docs" / "cli.md").read_text()
    assert PLAIN_TORCH.format(file="RUN_ID-last.pt") in cli  # docs/cli.md shows the very same lines

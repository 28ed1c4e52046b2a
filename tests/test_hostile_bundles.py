"""Issue 23: an imported bundle reads only a dataset its owner picked, and a stored config keeps the limits.

Bundles are crafted here from a real exported run: validation paths that leave the dataset folder are refused
in every mode with one line; a bundle's own `root` is never read; configs and numbers out of type or range
refuse the bundle; a bad run already in the store leaves the Runs page usable (it can be deleted).
"""

import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_runs_transfer import members, pt_bytes, runs, write_zip  # noqa: F401 - `runs` is a fixture

from lib.data.sample import sample_root
from lib.evaluation.predictions import run_predictions
from lib.runs.export import bundle_bytes
from lib.runs.importer import import_bundle, pick_dataset
from lib.runs.store import RunStore
from lib.settings import Settings
from lib.training.checkpoint import load_model
from lib.training.config import stored_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED = Settings(mode="deployed", max_image_size=128)


def import_cli(bundle: Path, runs_dir: Path, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHSCOPE_MODE": mode}
    cmd = [sys.executable, "-m", "lib", "import", str(bundle), "--runs-dir", str(runs_dir)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def crafted(folder: Path, run_id: str, *, ckpt: dict | None = None, row: dict | None = None, csv: bytes | None = None):
    """The run's bundle members with its last.pt's keys, run.json's keys or metrics.csv replaced."""
    m = members(folder, run_id)
    name = f"{run_id}/checkpoints/last.pt"
    if ckpt:
        m[name] = pt_bytes({**torch.load(io.BytesIO(m[name]), weights_only=True), **ckpt})
    if row:
        m[f"{run_id}/run.json"] = json.dumps({**json.loads(m[f"{run_id}/run.json"]), **row}).encode()
    if csv:
        m[f"{run_id}/metrics.csv"] += csv
    return m


ESCAPES = ["/etc/passwd", "../../etc/passwd", "a/../../../root/.ssh/id_rsa", "./a/1.png", "a//1.png", "C:/x.png",
           "a\\..\\..\\x.png", ""]  # fmt: skip


def escaping(folder: Path, run_id: str, bad: str, path: Path) -> Path:
    return write_zip(path, crafted(folder, run_id, ckpt={"val_paths": [bad, "b/2.png"], "val_targets": [0, 1]}))


@pytest.mark.parametrize("mode", ["local", "deployed"])
def test_import_refuses_a_path_out_of_the_dataset_in_one_line_in_every_mode(runs, tmp_path, mode):  # noqa: F811
    folder, ids = runs
    done = import_cli(escaping(folder, ids[0], "../../etc/passwd", tmp_path / "h.zip"), tmp_path / "dest", mode)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not a plain relative path" in done.stderr and RunStore(tmp_path / "dest").list_runs() == []


@pytest.mark.parametrize("bad", ESCAPES)
def test_every_escaping_validation_path_refuses_the_bundle(runs, tmp_path, bad):  # noqa: F811
    folder, ids = runs
    with pytest.raises(ValueError, match="not a plain relative path"):
        import_bundle(escaping(folder, ids[0], bad, tmp_path / "h.zip"), RunStore(tmp_path / "dest"))
    assert RunStore(tmp_path / "dest").list_runs() == []


def test_a_bundles_root_is_never_read_until_its_owner_picks_a_dataset(runs, tmp_path):  # noqa: F811
    folder, ids = runs
    lure = tmp_path / "secret" / "a"  # another visitor's upload: a real image the bundle points at
    lure.mkdir(parents=True)
    real = load_model(ids[0], runs_dir=folder)
    (lure / "1.png").write_bytes(Path(real.val_samples()[0][0]).read_bytes())
    evil = {"root": str(tmp_path / "secret"), "val_paths": ["a/1.png"], "val_targets": [0]}
    m = crafted(folder, ids[0], ckpt=evil, row={"root": str(tmp_path / "secret"), "parent": ids[1]})
    dest = RunStore(tmp_path / "dest")
    mapping = import_bundle(write_zip(tmp_path / "b.zip", m), dest, owner="visitor-b")
    run = dest.get_run(mapping[ids[0]])
    assert run.root == "" and run.parent is None  # the other run id is not this bundle's: no curve of it drawn
    loaded = load_model(run.id, runs_dir=dest.root)
    with pytest.raises(ValueError, match="was imported"):
        loaded.val_samples()
    (dest.files.predictions_path(run.id)).unlink(missing_ok=True)
    with pytest.raises(ValueError, match="was imported"):
        run_predictions(run.id, runs_dir=dest.root)
    mine = tmp_path / "mine"
    (mine / "a").mkdir(parents=True)
    pick_dataset(dest, run.id, mine)  # the owner's own folder: now, and only now, images are read, from it
    assert load_model(run.id, runs_dir=dest.root).val_samples() == [(str(mine.resolve() / "a" / "1.png"), 0)]


BAD_NUMBERS = {
    "epochs of the wrong type": (dict(row={"config": {"model": "linear", "epochs": "lots"}}), "epochs"),
    "created NaN": (dict(row={"created": float("nan")}), "created"),
    "created 1e300": (dict(row={"created": 1e300}), "created"),
    "a step of 10^20": (dict(csv=b"%s,step,100000000000000000000,1,0.5,,,0.1,10.0,,\n"), "out of range"),
    "total steps 10^20": (dict(row={"total_steps": 10**20}), "total_steps"),
    "image size over the limit": (dict(ckpt={"config": {"model": "linear", "image_size": 1024}}), "128 px"),
    "lr NaN in the checkpoint": (dict(ckpt={"config": {"model": "linear", "lr": float("nan")}}), "lr must be"),
}


@pytest.mark.parametrize("case", list(BAD_NUMBERS))
def test_values_of_wrong_type_or_out_of_range_refuse_the_bundle_in_one_line(runs, tmp_path, case):  # noqa: F811
    folder, ids = runs
    edit, match = BAD_NUMBERS[case]
    if "csv" in edit:
        edit = {"csv": edit["csv"].replace(b"%s", ids[0].encode())}
    done = import_cli(write_zip(tmp_path / "h.zip", crafted(folder, ids[0], **edit)), tmp_path / "dest", "deployed")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert match in done.stderr and "Traceback" not in done.stderr
    assert RunStore(tmp_path / "dest").list_runs() == []


def test_every_loaded_config_is_held_to_the_limits_of_start(runs, tmp_path):  # noqa: F811
    folder, ids = runs
    with pytest.raises(ValueError, match="at most 4 px"):
        load_model(ids[0], runs_dir=folder, settings=Settings(max_image_size=4))
    assert stored_config({"model": "linear", "epochs": 40}, DEPLOYED).epochs == 40  # what a continued run did
    with pytest.raises(ValueError, match="wrong type"):
        stored_config({"image_size": "big"}, DEPLOYED)


def test_runs_page_lists_and_deletes_a_bad_stored_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    store = RunStore(tmp_path)
    good = store.create_run({"model": "mlp", "epochs": 2}, root="/d", name="good")
    bad = store.create_run({"model": "mlp", "epochs": 2}, root="/d", name="bad")
    for run_id in (good, bad):
        store.finish(run_id, "completed")
    with sqlite3.connect(tmp_path / "runs.sqlite") as con:  # what an older import let in
        con.execute(
            "UPDATE runs SET config = ?, created = ?, total_steps = ? WHERE id = ?",
            ('{"model": "mlp", "epochs": "lots", "image_size": "x", "lr": "?"}', float("nan"), 2**62, bad),
        )
    at = AppTest.from_file(str(ROOT / "pages" / "runs.py"), default_timeout=60)
    at.session_state["session_id"] = "s1"
    at.run()
    assert not at.exception, at.exception
    table = next(d for d in at.dataframe if d.key == "runs_table").value
    assert set(table["id"]) == {good, bad}
    at.session_state["runs_table"] = {"selection": {"rows": [list(table["id"]).index(bad)], "columns": []}}
    at.run()
    assert not at.exception, at.exception
    at.checkbox(key="runs_delete_confirm").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception, at.exception
    assert [r.id for r in store.list_runs()] == [good]


def test_a_deployed_export_names_no_server_folder_or_session(runs):  # noqa: F811
    folder, ids = runs
    store = RunStore(folder)
    for private in (False, True):
        with zipfile.ZipFile(io.BytesIO(bundle_bytes(store, [ids[0]], private=private))) as zf:
            row = json.loads(zf.read(f"{ids[0]}/run.json"))
            ckpt = torch.load(io.BytesIO(zf.read(f"{ids[0]}/checkpoints/last.pt")), weights_only=True)
        assert ({"root", "owner", "visitor"} & row.keys() == set()) == private
        assert (ckpt["root"] == "") == private and ckpt["val_paths"]  # the split itself travels


def test_evaluate_asks_for_an_imported_runs_dataset_and_reads_only_the_one_opened(runs, tmp_path, monkeypatch):  # noqa: F811
    from tests.test_app_pages import APP, TIMEOUT

    folder, ids = runs
    bundle = write_zip(tmp_path / "b.zip", crafted(folder, ids[0], ckpt={"root": "/"}, row={"root": "/"}))
    dest = RunStore(tmp_path / "dest")
    (run_id,) = import_bundle(bundle, dest).values()
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(dest.root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(source="sample")
    at.run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception and any("was imported" in i.value for i in at.info), at.info
    assert not at.metric  # nothing read before the owner says which dataset
    at.button(key="imported_use_dataset").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert Path(dest.get_run(run_id).root) == Path(sample_root()).resolve()
    assert any(m.label == "Accuracy" for m in at.metric)

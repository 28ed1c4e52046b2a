"""TensorBoard in and out: event files written by torch's own SummaryWriter import with the values TensorBoard
stored (float32), tags mapped by the documented table; export writes event files TensorBoard's reader opens."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from lib.runs.logger import start_run
from lib.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
F32 = np.float32


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def write_logs(logdir: Path) -> None:
    """Two runs the way people log them: different aliases of the table's tags, and tags of their own."""
    aliases = {
        "a": ("train/loss", "learning_rate", "val/acc", "loss/val"),
        "b": ("loss", "lr", "accuracy/val", "val_loss"),
    }
    for folder, (loss, lr, acc, val) in aliases.items():
        with SummaryWriter(str(logdir / "sweep" / folder)) as w:
            for step in range(1, 41):
                w.add_scalar(loss, 1 / step + 0.1, step)
                w.add_scalar(lr, 0.1 * 0.9**step, step)
                w.add_scalar("grad/norm", step / 3, step)
                if step % 10 == 0:
                    w.add_scalar(acc, step / 41, step)
                    w.add_scalar(val, 3 / step, step)


def test_event_files_import_with_tensorboards_values_and_mapped_tags(tmp_path):
    write_logs(tmp_path / "logs")
    done = cli("import-tb", str(tmp_path / "logs"), "--runs-dir", str(tmp_path / "runs"), "--json")
    assert done.returncode == 0, done.stderr
    ids = {r["name"]: r["run_id"] for r in json.loads(done.stdout)["runs"]}
    assert sorted(ids) == ["sweep/a", "sweep/b"]
    store = RunStore(tmp_path / "runs")
    for run_id in ids.values():
        steps, epochs, extra = store.steps(run_id), store.epochs(run_id), store.metrics(run_id)
        assert steps["step"].tolist() == list(range(1, 41))
        assert steps["epoch"].tolist() == [(s - 1) // 10 + 1 for s in range(1, 41)]  # val at step 10 closes epoch 1
        assert steps["train_loss"].tolist() == [float(F32(1 / s + 0.1)) for s in range(1, 41)]
        assert steps["lr"].tolist() == [float(F32(0.1 * 0.9**s)) for s in range(1, 41)]
        assert epochs["epoch"].tolist() == [1, 2, 3, 4]
        assert epochs["val_accuracy"].tolist() == [float(F32(10 * e / 41)) for e in range(1, 5)]
        assert epochs["val_loss"].tolist() == [float(F32(3 / (10 * e))) for e in range(1, 5)]
        assert set(extra["name"]) == {"grad/norm"}
        assert extra["value"].tolist() == [float(F32(s / 3)) for s in range(1, 41)]
    assert store.get_run(ids["sweep/a"]).status == "completed"


def test_a_second_import_is_refused_in_one_line_or_renamed(tmp_path):
    write_logs(tmp_path / "logs")
    args = ("import-tb", str(tmp_path / "logs"), "--runs-dir", str(tmp_path / "runs"))
    assert cli(*args).returncode == 0
    again = cli(*args)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1 and "--rename" in again.stderr
    assert len(RunStore(tmp_path / "runs").list_runs()) == 2  # nothing half-written
    renamed = cli(*args, "--rename")
    assert renamed.returncode == 0, renamed.stderr
    names = sorted(r.name for r in RunStore(tmp_path / "runs").list_runs())
    assert names == ["sweep/a", "sweep/a (2)", "sweep/b", "sweep/b (2)"]  # the copies read apart from the first


def test_export_writes_event_files_tensorboard_reads_back(tmp_path):
    with start_run("logged one", config={"lr": 0.1}, runs_dir=tmp_path / "runs") as run:
        for step in range(1, 21):
            run.log(step=step, train_loss=1 / step, lr=0.01 * step, grad_norm=step / 7)
            if step % 5 == 0:
                run.log(step=step, epoch=step // 5, val_loss=2 / step, val_accuracy=step / 21)
    out = tmp_path / "tb"
    done = cli("export", run.id, "--out", str(out), "--format", "tensorboard", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    acc = EventAccumulator(str(out / "logged_one"), size_guidance={"scalars": 0})
    acc.Reload()
    read = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert read["train/loss"] == [(s, float(F32(1 / s))) for s in range(1, 21)]
    assert read["lr"] == [(s, float(F32(0.01 * s))) for s in range(1, 21)]
    assert read["grad_norm"] == [(s, float(F32(s / 7))) for s in range(1, 21)]
    assert read["val/loss"] == [(5 * e, float(F32(2 / (5 * e)))) for e in range(1, 5)]
    assert read["val/accuracy"] == [(5 * e, float(F32(5 * e / 21))) for e in range(1, 5)]
    back = cli("import-tb", str(out), "--runs-dir", str(tmp_path / "back"), "--json")  # and in again
    (row,) = json.loads(back.stdout)["runs"]
    epochs = RunStore(tmp_path / "back").epochs(row["run_id"])
    assert epochs["val_loss"].tolist() == [float(F32(2 / (5 * e))) for e in range(1, 5)]


def test_hparams_written_by_add_hparams_become_the_runs_config(tmp_path):
    with SummaryWriter(str(tmp_path / "logs" / "lr-0.1")) as w:
        w.add_scalar("loss", 0.5, 1)
        w.add_hparams({"lr": 0.1, "optimizer": "sgd", "nesterov": True}, {"hparam/accuracy": 0.75})
    done = cli("import-tb", str(tmp_path / "logs"), "--runs-dir", str(tmp_path / "runs"), "--json")
    assert done.returncode == 0, done.stderr
    store = RunStore(tmp_path / "runs")
    names = sorted(r.name for r in store.list_runs())  # torch writes hparams in a subfolder of its own: a run
    assert len(names) == 2 and names[0] == "lr-0.1" and names[1].startswith("lr-0.1/")
    (sub,) = [r for r in store.list_runs() if r.name == names[1]]
    assert {k: sub.config[k] for k in ("lr", "optimizer", "nesterov")} == {
        "lr": 0.1,
        "optimizer": "sgd",
        "nesterov": True,
    }
    assert store.metrics(sub.id)[["name", "value"]].values.tolist() == [["hparam/accuracy", 0.75]]


def test_help_and_the_parser_do_not_import_torch_or_tensorboard():
    code = "import sys; from lib.__main__ import build_parser; build_parser(); print({'torch', 'tensorboard'} & set(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "set()", done.stderr

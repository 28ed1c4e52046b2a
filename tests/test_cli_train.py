"""`python -m lib train` / `runs`: JSON contract, exit codes, no tracebacks, defaults in the help."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.__main__ import build_parser, main
from lib.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_train_json_then_runs_json_list_the_run(tmp_path):
    done = cli(
        "train",
        "sample",
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--max-batches",
        "4",
        "--runs-dir",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["steps"] == 8
    assert {"run_id", "train_loss", "val_loss", "val_accuracy", "samples_per_sec"} <= set(summary)
    assert 0 <= summary["val_accuracy"] <= 1 and summary["samples_per_sec"] > 0
    timings = summary["timings"]  # seconds per phase of this process
    phases = ("python", "index", "imports", "store", "decode", "statistics", "model", "epochs", "checkpoint")
    assert set(phases) <= set(timings) and all(timings[p] >= 0 for p in phases)
    assert timings["epochs"] > 0 and timings["total"] >= timings["imports"] + timings["epochs"]
    record = RunStore(tmp_path).get_run(summary["run_id"])
    assert record.final["val_loss"] == pytest.approx(summary["val_loss"]) and record.checkpoint
    assert summary["checkpoint"] == record.checkpoint and Path(summary["checkpoint"]).is_file()
    listed = cli("runs", "--runs-dir", str(tmp_path), "--json")
    runs = json.loads(listed.stdout)
    assert [(r["run_id"], r["status"], r["config"]["model"]) for r in runs] == [(summary["run_id"], "completed", "mlp")]
    assert runs[0]["val_accuracy"] == pytest.approx(summary["val_accuracy"])
    assert runs[0]["name"] == summary["run_id"] and runs[0]["dataset"] == record.root


def test_train_text_prints_the_checkpoint_and_runs_shows_name_and_dataset(tmp_path):
    args = ("--model", "linear", "--epochs", "1", "--max-batches", "2", "--name", "tiny", "--runs-dir", str(tmp_path))
    done = cli("train", "sample", *args)
    assert done.returncode == 0, done.stderr
    (record,) = RunStore(tmp_path).list_runs()
    assert f"checkpoint: {record.checkpoint}" in done.stdout.splitlines()
    listed = cli("runs", "--runs-dir", str(tmp_path))
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["id", "run", "dataset", "model", "status", "epoch", "val", "accuracy", "duration"]
    assert row.split()[:6] == [record.id, "tiny", Path(record.root).name, "linear", "completed", "1/1"]


def test_diverged_run_exits_3_without_a_traceback_and_keeps_its_steps(tmp_path):
    done = cli(
        "train",
        "sample",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--lr",
        "1e6",
        "--optimizer",
        "sgd",
        "--runs-dir",
        str(tmp_path),
        "--json",
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr + done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "diverged" and "learning rate" in summary["message"]
    assert len(RunStore(tmp_path).steps(summary["run_id"])) == summary["steps"] >= 1


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epochs", "0"], "epochs must be"),
        (["--val-split", "1.5"], "val_split"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, words):
    assert main(["train", "sample", "--runs-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err
    assert RunStore(tmp_path).list_runs() == []  # nothing was started


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "--runs-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_option_states_its_default_in_the_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        for action in sub.choices[name]._actions:
            if action.option_strings and action.dest != "help" and not action.required:
                assert "default" in (action.help or ""), f"{name} {action.option_strings} has no default in its help"


def test_sigterm_stops_after_the_current_batch_and_exits_4(tmp_path):
    import signal

    from tests.train_helpers import wait_for_steps

    cmd = [sys.executable, "-m", "lib", "train", "sample", "--model", "linear", "--epochs", "100"]
    cmd += ["--image-size", "8", "--batch-size", "8", "--runs-dir", str(tmp_path), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(tmp_path)

    try:
        run_id = wait_for_steps(store, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 4, err
    assert "Traceback" not in out + err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "stopped" and summary["run_id"] == run_id and summary["epochs"] < 100
    assert store.get_run(run_id).status == "stopped"


def test_a_run_that_fails_exits_1_and_says_why(tmp_path):
    """Files named like images that are not: the trainer lists them without opening (no header pass), its one
    decode finds none usable, and the run it created ends failed, with the reason."""
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / c / f"{i}.png").write_bytes(b"not a png at all")
    runs = str(tmp_path / "runs")
    done = cli("train", str(tmp_path / "data"), "--model", "linear", "--epochs", "1", "--runs-dir", runs, "--json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "No training image decodes (6 of 6 failed" in summary["message"]
    assert RunStore(runs).get_run(summary["run_id"]).status == "failed"

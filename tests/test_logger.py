"""The logger: a user's script logs into the store; what it logged comes back exactly, and it ends as it ended."""

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lib.runs.logger import SummaryWriter, start_run
from lib.runs.status import Status
from lib.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import math, sys
from lib.runs.logger import start_run

with start_run("script", config={"lr": 0.1, "model": "mine"}, runs_dir=sys.argv[1]) as run:
    for step in range(1, 41):
        run.log(step=step, train_loss=math.sin(step) / 3 + 1, lr=0.1 * 0.9**step, grad_norm=step / 7)
        if step % 10 == 0:
            epoch = step // 10
            run.log(step=step, epoch=epoch, val_loss=1 / (epoch + 0.3), val_accuracy=epoch / 7, val_f1=epoch / 9)
    if sys.argv[2] == "fail":
        raise RuntimeError("the loader broke\\nsecond line")
    if sys.argv[2] == "wait":
        run.flush()
        print("flushed", flush=True)
        sys.stdin.readline()
"""


def run_script(tmp_path: Path, mode: str, **kw) -> subprocess.Popen:
    script = tmp_path / "train_mine.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "runs"), mode], cwd=tmp_path, env=env, text=True, **kw
    )


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def expected(epoch_rows: bool) -> list[tuple]:
    """The script's values, computed here with the same formulas (float64, as logged)."""
    import math

    if epoch_rows:
        return [(e, 1 / (e + 0.3), e / 7) for e in range(1, 5)]
    return [(s, (s - 1) // 10 + 1, math.sin(s) / 3 + 1, 0.1 * 0.9**s) for s in range(1, 41)]


def test_a_script_logs_40_steps_and_4_epochs_that_export_gives_back_exactly(tmp_path):
    assert run_script(tmp_path, "ok").wait(timeout=120) == 0
    store = RunStore(tmp_path / "runs")
    (record,) = store.list_runs()
    assert (record.status, record.name, record.config) == ("completed", "script", {"lr": 0.1, "model": "mine"})
    out = tmp_path / "m.csv"
    done = cli("export", record.id, "--out", str(out), "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    steps = [
        (int(r["step"]), int(r["epoch"]), float(r["train_loss"]), float(r["lr"])) for r in rows if r["kind"] == "step"
    ]
    assert steps == expected(epoch_rows=False)
    epochs = [(int(r["epoch"]), float(r["val_loss"]), float(r["val_accuracy"])) for r in rows if r["kind"] == "epoch"]
    assert epochs == expected(epoch_rows=True)
    extra = {(r["metric"], int(r["step"])): float(r["value"]) for r in rows if r["kind"] == "metric"}
    assert extra == {
        **{("grad_norm", s): s / 7 for s in range(1, 41)},
        **{("val_f1", 10 * e): e / 9 for e in range(1, 5)},
    }


def test_extra_metrics_round_trip_through_a_bundle(tmp_path):
    assert run_script(tmp_path, "ok").wait(timeout=120) == 0
    (record,) = RunStore(tmp_path / "runs").list_runs()
    bundle, other = tmp_path / "b.zip", tmp_path / "other"
    assert cli("export", record.id, "--out", str(bundle), "--runs-dir", str(tmp_path / "runs")).returncode == 0
    done = cli("import", str(bundle), "--runs-dir", str(other))
    assert done.returncode == 0, done.stderr
    back = RunStore(other).metrics(record.id)
    assert back.to_dict("list") == RunStore(tmp_path / "runs").metrics(record.id).to_dict("list")
    assert sorted(set(back["name"])) == ["grad_norm", "val_f1"] and len(back) == 44


def test_an_exception_in_the_block_leaves_the_run_failed_with_its_line(tmp_path):
    proc = run_script(tmp_path, "fail", stderr=subprocess.PIPE)
    assert proc.wait(timeout=120) == 1 and "the loader broke" in proc.stderr.read()
    (record,) = RunStore(tmp_path / "runs").list_runs()
    assert (record.status, record.message) == ("failed", "RuntimeError: the loader broke")
    assert len(RunStore(tmp_path / "runs").steps(record.id)) == 40  # what was logged before is kept


def test_a_killed_script_is_found_interrupted_when_the_app_looks(tmp_path):
    proc = run_script(tmp_path, "wait", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "flushed"
    store = RunStore(tmp_path / "runs")
    assert store.list_runs()[0].status == "running"  # alive: still running
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (record,) = store.list_runs()
    assert record.status == "interrupted" and len(store.steps(record.id)) == 40


def test_keyboard_interrupt_ends_stopped_and_stop_reaches_should_stop(tmp_path):
    with pytest.raises(KeyboardInterrupt), start_run("k", runs_dir=tmp_path) as run:
        run.log(step=1, train_loss=0.5)
        raise KeyboardInterrupt
    store = RunStore(tmp_path)
    assert store.get_run(run.id).status == Status.STOPPED
    with start_run("s", runs_dir=tmp_path, flush_s=60) as run:
        run.log(step=1, train_loss=0.5)
        run.flush()
        assert not run.should_stop
        store.request_stop(run.id)  # what Stop on the Train page does
        run.flush()
        assert run.should_stop
    assert store.get_run(run.id).status == Status.STOPPED


def test_a_logged_run_samples_the_machine_as_a_trainer_does(tmp_path):
    from lib.runs.inside import machine

    with start_run("m", runs_dir=tmp_path, machine_s=0.05) as run:
        run.log(step=7, train_loss=0.5)
        deadline = time.monotonic() + 60
        while machine(RunStore(tmp_path), run.id).empty and time.monotonic() < deadline:
            sum(i * i for i in range(100_000))  # busy, so the CPU share has something to count
    rows = machine(RunStore(tmp_path), run.id)
    assert len(rows) >= 1 and (rows["rss_mb"] > 10).all() and (rows["cpu_percent"] >= 0).all()
    assert set(rows["step"]) <= {0.0, 7.0}  # the step logged when each sample was taken


def test_a_run_shorter_than_the_sampling_period_still_has_one_machine_row(tmp_path):
    from lib.runs.inside import machine

    with start_run("short", runs_dir=tmp_path, machine_s=3600) as run:  # the timer never fires
        run.log(step=3, train_loss=0.5)
    rows = machine(RunStore(tmp_path), run.id)
    assert len(rows) == 1 and rows["step"].tolist() == [3.0] and rows["rss_mb"].iloc[0] > 10


def test_two_calls_fill_one_row_and_threads_lose_nothing(tmp_path):
    with start_run("t", runs_dir=tmp_path, flush_s=0.01) as run:
        run.log(step=1, train_loss=0.25)
        run.flush()
        run.log(step=1, lr=0.5)  # a later call for the same step adds to its row

        def worker(k: int) -> None:
            for i in range(200):
                run.log(step=10 + k * 1000 + i, train_loss=float(i), **{f"m{k}": i / 3})

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    store = RunStore(tmp_path)
    steps = store.steps(run.id)
    assert steps.iloc[0][["step", "train_loss", "lr"]].tolist() == [1.0, 0.25, 0.5]
    assert len(steps) == 1 + 800 and len(store.metrics(run.id)) == 800
    assert store.get_run(run.id).status == Status.COMPLETED


def test_summary_writer_maps_tags_and_keeps_others(tmp_path):
    with SummaryWriter(name="tb", runs_dir=tmp_path) as writer:
        for step in range(1, 7):
            writer.add_scalar("loss/train", step / 4, step)
            writer.add_scalars("grad", {"norm": step / 8}, step)
            if step % 3 == 0:
                writer.add_scalar("val/acc", step / 10, step)
                writer.add_scalar("val_loss", step / 5, step)
        writer.add_hparams({"lr": 0.01, "model": "mine"}, {"hparam/score": 0.5})
    store = RunStore(tmp_path)
    (record,) = store.list_runs()
    assert record.config == {"lr": 0.01, "model": "mine"} and record.status == "completed"
    steps = store.steps(record.id)
    assert steps[["step", "epoch", "train_loss"]].values.tolist() == [[s, 1 + (s > 3), s / 4] for s in range(1, 7)]
    assert store.epochs(record.id)[["epoch", "val_loss", "val_accuracy"]].values.tolist() == [
        [1, 0.6, 0.3],
        [2, 1.2, 0.6],
    ]
    names = store.metrics(record.id).groupby("name")["value"].apply(list).to_dict()
    assert names == {"grad/norm": [s / 8 for s in range(1, 7)], "hparam/score": [0.5]}


def test_the_docs_plain_torch_example_runs_and_logs(tmp_path):
    docs = (ROOT / "docs" / "logging.md") if (ROOT / "docs" / "logging.md").exists() else ROOT / "README.md"
    text = docs.read_text()
    start = text.index("```python\n", text.index("<!-- logger example -->")) + len("```python\n")
    code = textwrap.dedent(text[start : text.index("```", start)])
    assert len(code.splitlines()) <= 20
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCHSCOPE_RUNS_DIR": str(tmp_path / "runs")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (record,) = RunStore(tmp_path / "runs").list_runs()
    assert record.status == "completed" and len(RunStore(tmp_path / "runs").epochs(record.id)) >= 1


def test_evaluate_opens_a_logged_run_of_a_project_model_and_says_why_not_otherwise(tmp_path):
    import json

    import torch

    from lib.data.index import build_index
    from lib.data.sample import sample_root
    from lib.training.checkpoint import load_model
    from lib.training.models import build_model
    from lib.training.resume import resumable

    index = build_index(str(sample_root()))
    val = index.samples[::7]
    model = build_model("linear", len(index.classes), 8)
    with torch.no_grad():  # a constant answer: class 0 for every image, so accuracy is its share of val
        model[-1].weight.zero_()
        model[-1].bias.copy_(torch.eye(len(index.classes))[0])
    with start_run("mine", config={"model": "linear", "image_size": 8}, runs_dir=tmp_path) as run:
        run.log(step=1, train_loss=1.0)
        run.save_checkpoint(model, classes=index.classes, val_samples=val)
    done = cli("evaluate", run.id, "--runs-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accuracy"] == sum(t == 0 for _, t in val) / len(val)
    with pytest.raises(ValueError, match="logged by a script"):
        resumable(RunStore(tmp_path), run.id)  # Train more continues only the app's own runs
    with start_run("own model", config={"model": "mine"}, runs_dir=tmp_path) as other:
        other.save_checkpoint(torch.nn.Linear(3, 2), classes=["a", "b"])
    with pytest.raises(ValueError, match=r"cannot rebuild \('mine'\)") as error:
        load_model(other.id, runs_dir=tmp_path)  # what Evaluate and Explain call; they show the sentence
    assert str(error.value).count(". ") == 0 and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["evaluate", "explain"])
def test_evaluate_and_explain_pages_say_in_one_sentence_when_a_logged_model_cannot_be_rebuilt(
    tmp_path, monkeypatch, name
):
    import torch
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    with start_run("own model", config={"model": "mine"}) as run:
        run.save_checkpoint(torch.nn.Linear(3, 2), classes=["a", "b"])
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)
    at.session_state["session_id"] = "s1"
    at.run()
    assert not at.exception, at.exception
    assert [e.value.replace("\\", "") for e in at.error] == [  # shown as plain text: Markdown escaped
        f"Run {run.id} saved a model Torchscope cannot rebuild ('mine'), so it cannot be opened here; a logged run "
        "can be when its config names a model of `python -m lib models` and its image_size."
    ]

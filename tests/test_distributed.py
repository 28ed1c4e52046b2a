"""`torchrun -m lib train|stats` with 2 processes on CPU (gloo), against the single process as the reference.

Each test starts real torchrun processes, the commands docs/distributed.md gives, on a tiny dataset: 3 classes of
8x8 images, a few steps. The per-step loss tolerance is 1e-5 (absolute): the two processes sum their
halves of each batch in another order than one process does (float32), nothing else differs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from helpers import write_imagefolder, write_truncated_jpeg
from torch import nn
from train_helpers import wait_for

from lib.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2"]
LOSS_TOL = 1e-5
TRAIN = ["--model", "mlp", "--image-size", "8", "--batch-size", "11", "--json"]  # 11: ranks take 6 and 5


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """72 images in 3 classes; with val_split 0.25, 54 train: 4 steps of 11 images, then one of 10."""
    return write_imagefolder(
        tmp_path_factory.mktemp("ddp") / "data", classes=("a", "b", "c"), per_class=24, size=(8, 8)
    )


def one_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def two_processes(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def summary(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_docs_give_the_commands_these_tests_run():
    readme = (ROOT / "docs" / "distributed.md").read_text()
    launcher = " ".join(TORCHRUN[1:])
    assert f".venv/bin/torchrun {launcher} -m lib train SOURCE {' '.join(TRAIN)}" in readme
    assert f".venv/bin/python -m torch.distributed.run {launcher} -m lib stats SOURCE --json" in readme


@pytest.mark.parametrize(
    ("cache_mb", "epochs", "more"), [("2048", 1, 1), ("0", 2, 0)], ids=["decoded-once", "streamed"]
)
def test_two_processes_record_the_one_process_losses_and_accuracy(data, tmp_path, cache_mb, epochs, more):
    """2 processes for `epochs` epochs, then (`more`) `--resume` of that run in one process, against one
    process training all of them: the same losses step by step and the same validation accuracy each epoch.
    Streamed, the second epoch checks the reshuffle; decoded once (where later epochs differ by design,
    docs/distributed.md), the resume checks that the checkpoint's generator states are one process's."""
    args = ["train", str(data), *TRAIN, "--val-split", "0.25", "--cache-mb", cache_mb]
    one = one_process(*args, "--epochs", str(epochs + more), "--runs-dir", str(tmp_path / "one"))
    two = two_processes(*args, "--epochs", str(epochs), "--runs-dir", str(tmp_path / "two"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    a, b = summary(one), summary(two)
    listed_once_and_loads_in_one_process(tmp_path / "two", b)
    runs = [b]
    if more:
        resume = ["train", "--resume", b["run_id"], "--epochs", str(more), "--json", "--cache-mb", cache_mb]
        done = one_process(*resume, "--runs-dir", str(tmp_path / "two"))
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(summary(done))
    ref, store = RunStore(tmp_path / "one"), RunStore(tmp_path / "two")
    loss_one = ref.steps(a["run_id"]).train_loss.to_numpy()
    loss_two = np.concatenate([store.steps(r["run_id"]).train_loss.to_numpy() for r in runs])
    assert len(loss_one) == len(loss_two) == 5 * (epochs + more)  # 54 images: 4 global batches of 11, then 10
    np.testing.assert_allclose(loss_two, loss_one, rtol=0, atol=LOSS_TOL)
    accuracy_two = [a for r in runs for a in store.epochs(r["run_id"]).val_accuracy]
    assert accuracy_two == list(ref.epochs(a["run_id"]).val_accuracy)
    assert runs[-1]["val_loss"] == pytest.approx(a["val_loss"], abs=LOSS_TOL)
    if more:  # the continuation is a one-process run, linked to the 2-process one
        child = store.get_run(runs[-1]["run_id"])
        assert child.parent == b["run_id"] and child.config["world_size"] == 1


def listed_once_and_loads_in_one_process(runs: Path, run: dict) -> None:
    """`lib runs` shows the run once with world_size 2; its checkpoint rebuilds in this one process and
    scores the recorded validation figures on the whole stored split (not rank 0's shard)."""
    from lib.training.checkpoint import load_model
    from lib.training.engine import evaluate_checkpoint

    listed = json.loads(one_process("runs", "--runs-dir", str(runs), "--json").stdout)
    assert [(r["run_id"], r["status"], r["config"]["world_size"]) for r in listed] == [(run["run_id"], "completed", 2)]
    loaded = load_model(run["run_id"], runs_dir=runs)  # strict load into build_model: no DDP "module." prefix
    assert loaded.config.world_size == 2 and len(loaded.val_paths) == 18  # 72 images, 0.25 of each class
    val_loss, val_accuracy = evaluate_checkpoint(loaded)
    assert val_accuracy == run["val_accuracy"]
    assert val_loss == pytest.approx(run["val_loss"], abs=LOSS_TOL)


def test_distributed_stats_equal_single_process_stats_exactly(data, tmp_path):
    source = tmp_path / "stats"
    write_imagefolder(source, classes=("a", "b"), per_class=7, size=(9, 5), seed=3)
    write_truncated_jpeg(source / "b" / "broken.jpg")  # a header that reads, pixels that do not
    one = one_process("stats", str(source), "--json")
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", *TORCHRUN[1:], "-m", "lib", "stats", str(source), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("\n") == 1  # rank 0 alone prints
    expected, got = json.loads(one.stdout), json.loads(two.stdout)
    assert got == expected and got["num_images"] == 14 and len(got["failed"]) == 1


# --- stopping and failing --------------------------------------------------------------------------


class LongRun:
    """A 2-process run that would train for minutes, started as docs/distributed.md says, watched through its store."""

    def __init__(self, data: Path, runs: Path):
        args = ["train", str(data), *TRAIN, "--epochs", "500", "--runs-dir", str(runs)]
        self.proc = subprocess.Popen(
            [*TORCHRUN, "-m", "lib", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.store = RunStore(runs)
        self.run_id = wait_for(self._training, timeout=180)

    def _training(self) -> str | None:
        runs = self.store.list_runs()
        return runs[0].id if runs and len(self.store.steps(runs[0].id)) >= 3 else None

    def rank_pid(self, rank: int) -> int:
        """The pid of the worker torchrun started with RANK=rank."""
        for entry in Path("/proc").iterdir():
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == self.proc.pid and f"RANK={rank}".encode() in env:
                return int(entry.name)
        raise AssertionError(f"no rank {rank} under torchrun {self.proc.pid}")

    def final(self, timeout: float):
        """The run once it has a final status; `interrupted` (rank 0 gone, no status yet) is not final here."""
        return wait_for(
            lambda: (r := self.store.get_run(self.run_id)).status not in ("running", "interrupted") and r,
            timeout=timeout,
        )

    def finish(self) -> str:
        """torchrun's stderr, once it exited."""
        _, err = self.proc.communicate(timeout=120)
        return err


@pytest.mark.parametrize("how", ["app", "sigterm"])
def test_stop_from_the_app_or_sigterm_to_one_rank_stops_both_after_a_batch(data, tmp_path, how):
    run = LongRun(data, tmp_path / "runs")
    if how == "app":
        run.store.request_stop(run.run_id)  # what the Train page's Stop does
    else:
        os.kill(run.rank_pid(1), signal.SIGTERM)
    record = run.final(timeout=30)
    err = run.finish()
    assert record.status == "stopped" and record.checkpoint
    # Rank 1 stopped too: a rank left waiting in a collective would fail when rank 0 leaves, and torchrun
    # would then exit 1 and say it terminated or lost a worker.
    assert run.proc.returncode == 0, err[-2000:]
    assert "closing signal" not in err and "FAILED" not in err


@pytest.mark.parametrize("rank", [1, 0])
def test_killing_one_rank_ends_the_run_failed_within_seconds(data, tmp_path, rank):
    run = LongRun(data, tmp_path / "runs")
    pid = run.rank_pid(rank)
    start = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    record = run.final(timeout=30)
    took = time.monotonic() - start
    run.finish()
    assert record.status == "failed"
    assert record.message.startswith(f"Rank {rank} of 2 (pid {pid}) ended without a reason"), record.message
    assert took < 10, f"took {took:.1f} s"


class FailsOnRank1(nn.Module):
    """An mlp whose third forward raises on rank 1 only: a rank with an error of its own."""

    def __init__(self, rank: int, inner: nn.Module):
        super().__init__()
        self.rank, self.inner, self.calls = rank, inner, 0

    def forward(self, x):
        self.calls += 1
        if self.rank == 1 and self.calls == 3:
            raise ValueError("Rank 1 could not read its batch.")
        return self.inner(x)


def _one_rank(rank: int, init_file: str, data: str, out) -> None:
    """A spawned rank: join a 2-process gloo group, train, and say how the run ended as this rank sees it."""
    import torch.distributed as tdist

    from lib.data.index import build_index
    from lib.training.config import TrainConfig
    from lib.training.distributed import Dist
    from lib.training.engine import fit
    from lib.training.models import build_model

    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    ctx, index = Dist(rank=rank, world_size=2, local_world_size=2), build_index(data)
    config = TrainConfig(model="mlp", image_size=8, batch_size=11, epochs=1, device="cpu")
    result = fit(
        config,
        index.samples,
        index.classes,
        dist=ctx,
        model_fn=lambda *a, **k: FailsOnRank1(rank, build_model(*a, **k)),
    )
    if rank == 1:
        ctx.report_failure(result.message)  # what `lib train` does on a rank other than 0
    out.put((rank, result.status, ctx.failure_reason(result.message) if rank == 0 else result.message))


def test_a_rank_with_an_error_fails_the_run_with_that_ranks_reason(data, tmp_path, monkeypatch):
    # A spawned child re-runs this process's __main__; after an AppTest that is a page script, so give it none.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_one_rank, args=(r, str(tmp_path / "init"), str(data), out)) for r in (0, 1)]
    for p in procs:
        p.start()
    ended = dict((rank, (status, message)) for rank, status, message in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    assert ended[1] == ("failed", "Rank 1 could not read its batch.")
    assert ended[0] == ("failed", "Rank 1 of 2 failed: Rank 1 could not read its batch.")

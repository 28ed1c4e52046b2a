"""Issue 23, hole 5: the learning-rate finder has the watch of trains and sweeps: it ends with the server that
started it and within the per-run time limit, and a refusal names the real wait.

A finder once ran 237 s on a 1-minute server and survived the server as an orphan; the refusal said "try
again in a minute" while it ran 6.7 minutes.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import wait_for

from lib.runs.store import RunStore
from lib.settings import Settings
from lib.training import runner
from lib.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
ENDLESS = ["-m", "lib", "lr-find", "sample", "--model", "mlp", "--image-size", "8", "--num-batches", "100000000",
           "--end-lr", "1e-6", "--json"]  # fmt: skip


def gone(pid: int) -> bool:
    """Whether pid has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_finder_ends_when_the_server_that_started_it_does(tmp_path):
    # The "server": starts the finder in its own session (as runner.launch does), prints its pid, exits.
    server = (
        "import subprocess, sys, os; p = subprocess.Popen([sys.executable, *sys.argv[1:], '--parent-pid', "
        "str(os.getpid())], start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(sys.argv[0] + '.log', 'w')); "
        "print(p.pid)"
    )
    script = tmp_path / "server.py"
    script.write_text(server)
    done = subprocess.run([sys.executable, str(script), *ENDLESS], cwd=ROOT, capture_output=True, text=True)
    finder = int(done.stdout)
    try:
        wait_for(lambda: gone(finder), timeout=60)
    finally:
        if not gone(finder):
            os.kill(finder, 9)
    assert "The app's server stopped" in (tmp_path / "server.py.log").read_text()


def test_a_finder_ends_at_the_time_limit_saying_so(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, *ENDLESS, "--max-minutes", "0.05"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 4 and "Stopped after 0.05 minutes" in done.stderr
    assert time.monotonic() - start < 60


def test_the_app_starts_it_watched_and_a_refusal_names_the_real_wait(tmp_path, monkeypatch):
    seen = []

    def fake_launch(args, log, settings):
        seen.append(args)
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    monkeypatch.setattr(runner, "launch", fake_launch)
    settings = Settings(mode="deployed", max_run_minutes=7, max_runs_global=1, max_runs_per_visitor=1)
    store = RunStore(tmp_path)
    proc = runner.start_finder(TrainConfig(model="mlp"), "root", store, tmp_path / "out", "tab1", settings, "v1")
    try:
        args = seen[0]
        assert args[args.index("--parent-pid") + 1] == str(os.getpid())
        assert args[args.index("--max-minutes") + 1] == "7"
        with pytest.raises(ValueError, match="within 7 min at most"):
            runner.check_capacity(store, "tab1", settings, "v1")
        with pytest.raises(ValueError, match=r"free up in about 7 min"):  # someone else: the server's one slot
            runner.check_capacity(store, "tab2", settings, "v2")
    finally:
        proc.kill()
        proc.wait()

"""Background jobs: progress, errors in words, and a process that exits cleanly while a job runs in torch."""

import subprocess
import sys
import threading
from pathlib import Path

from lib.app.jobs import BackgroundJob

ROOT = Path(__file__).resolve().parents[1]


def test_a_job_reports_progress_and_its_result():
    reported, step = threading.Event(), threading.Event()

    def work(progress):
        progress(1, 4)
        reported.set()
        step.wait(10)
        return "done"

    job = BackgroundJob(work)
    assert reported.wait(10)
    assert (job.done, job.fraction) == (False, 0.25)
    step.set()
    assert job.wait(10) and (job.result, job.error, job.fraction) == ("done", None, 1.0)


def test_a_failing_job_keeps_its_message():
    def work(progress):
        raise ValueError("The folder is empty.")

    job = BackgroundJob(work)
    assert job.wait(10) and (job.result, job.error) == (None, "The folder is empty.")


EXITS_WHILE_A_JOB_RUNS = """
import threading
import torch
from lib.app.jobs import BackgroundJob

started = threading.Event()

def work(progress):
    x = torch.randn(400, 400)
    for i in range(10**6):
        x = (x @ x).tanh()
        started.set()
        progress(i, 10**6)

job = BackgroundJob(work)
assert started.wait(60)
"""


def test_a_process_exiting_while_a_job_runs_in_torch_stops_it_and_exits_cleanly():
    # Without the stop at exit, the daemon thread inside torch aborts the interpreter's finalization
    # ("terminate called without an active exception", status 134): a test session or a stopped server.
    done = subprocess.run([sys.executable, "-c", EXITS_WHILE_A_JOB_RUNS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert (done.returncode, "terminate called" in done.stderr) == (0, False), done.stderr[-2000:]

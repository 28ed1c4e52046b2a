"""The Health page's state outside the page: findings jobs (one per dataset and options, shared by the server),
the visitor's marks, and the pictures of a duplicate pair. Findings themselves are files (lib.health.findings).

Deployed, marks and findings live under the visitor's session folder, so each visitor's marks are their own;
locally they are the dataset's, shared with the command line (`<cache>/health`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import streamlit as st

from lib.app import cache
from lib.app.jobs import BackgroundJob
from lib.data.images import load_rgb
from lib.data.marks import read_marks, toggle_marks
from lib.health.findings import Findings, HealthConfig, dataset_findings, findings_path, load_findings
from lib.settings import runs_dir

DIFF_SIDE = 96
CHECKS_AT_ONCE = 2  # health checks computing at once on a server (they train in its process); others wait
CHECKS_PER_TAB = 2  # deployed: checks a tab may have under way (computing or waiting)


def marks(root: str) -> list[str]:
    return read_marks(root, cache.marks_base())


def set_marked(root: str, paths: list[str], marked: bool) -> list[str]:
    """Mark or unmark files; the indexes read the marks at their next use."""
    return toggle_marks(root, paths, marked, cache.marks_base())


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[dict[tuple, BackgroundJob], threading.Lock]:
    return {}, threading.Lock()


class _Slots:
    """CHECKS_AT_ONCE places to compute in; who waits for one, and which tab started which check."""

    def __init__(self):
        self.free = threading.BoundedSemaphore(CHECKS_AT_ONCE)
        self.waiting: set[tuple] = set()
        self.started_by: dict[tuple, str | None] = {}


@st.cache_resource(show_spinner=False)
def _slots() -> _Slots:
    return _Slots()


def _job_key(index, config: HealthConfig) -> tuple:
    return (str(findings_path(index, config, cache.marks_base())),)


def stored(index, config: HealthConfig) -> Findings | None:
    """The findings of this index and options when computed before (a job's or a file's), else None."""
    job = findings_job(index, config)
    if job is not None and job.done and job.result is not None:
        return job.result
    return load_findings(findings_path(index, config, cache.marks_base()))


def findings_job(index, config: HealthConfig, *, start: bool = False) -> BackgroundJob | None:
    """The background computation of a dataset's findings; started when asked, once per dataset and options.

    At most CHECKS_AT_ONCE compute at once on the server (the others wait their turn: `waiting`); deployed, a
    tab with CHECKS_PER_TAB checks under way is refused another (ValueError, one sentence)."""
    jobs, lock = _jobs()
    key, base, slots = _job_key(index, config), cache.marks_base(), _slots()
    with lock:
        if key not in jobs and start:
            tab = st.session_state.get("session_id")
            if cache.settings().deployed:
                mine = [k for k, j in jobs.items() if not j.done and slots.started_by.get(k) == tab]
                if len(mine) >= CHECKS_PER_TAB:
                    raise ValueError(
                        f"This tab already has {len(mine)} health checks under way; start another when one ends."
                    )
            slots.started_by[key] = tab
            jobs[key] = BackgroundJob(lambda progress: _in_turn(key, progress, slots, index, config, base), "health")
        return jobs.get(key)


def _in_turn(key: tuple, progress, slots: _Slots, index, config: HealthConfig, base):
    """dataset_findings once one of the server's places is free (progress stays 0 while waiting)."""
    slots.waiting.add(key)
    try:
        while not slots.free.acquire(timeout=0.5):
            progress(0, 0)  # raises when the server is closing
    finally:
        slots.waiting.discard(key)
    try:
        return dataset_findings(index, config, progress, base)
    finally:
        slots.free.release()


def waiting(index, config: HealthConfig) -> bool:
    """Whether this check waits for a free place (CHECKS_AT_ONCE others compute)."""
    return _job_key(index, config) in _slots().waiting


@st.cache_data(show_spinner=False, max_entries=256)
def difference(a: str, b: str) -> tuple[np.ndarray, int] | str:
    """(|a - b| of two images at DIFF_SIDE px scaled so the largest difference is white, that largest
    difference in levels of 255); or why not."""
    try:
        x, y = (np.asarray(load_rgb(p).resize((DIFF_SIDE, DIFF_SIDE)), dtype=np.int16) for p in (a, b))
    except ValueError as e:
        return str(e)
    diff = np.abs(x - y)
    return (diff * (255.0 / max(int(diff.max()), 1))).astype(np.uint8), int(diff.max())


@st.cache_data(show_spinner=False, max_entries=64)
def _val_paths(run_id: str, key: int) -> frozenset[str]:
    """The validation split of a run's last checkpoint (key: its mtime, so a run that trains on is read again)."""
    ckpt = cache.run_store(str(runs_dir())).files.load_checkpoint(run_id, "last")
    return frozenset(ckpt.get("val_paths", []))


def explain_runs(root: str, owner: str | None) -> dict[str, str]:
    """Each image of the dataset at root that a run (trained on it, with a checkpoint) validated -> the newest
    such run: the Explain page explains a run's validation images only. owner: deployed, the visitor's runs."""
    here, found = Path(root).resolve(), {}
    for record in reversed(cache.run_store(str(runs_dir())).list_runs(owner)):  # oldest first: the newest wins
        if not record.root or Path(record.root).resolve() != here:
            continue
        try:
            found.update(dict.fromkeys(_val_paths(record.id, cache.checkpoint_key(record.id)), record.id))
        except (ValueError, OSError, RuntimeError):  # no checkpoint yet, or one that cannot be read: nothing to explain
            continue
    return found

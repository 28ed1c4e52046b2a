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


def marks(root: str) -> list[str]:
    return read_marks(root, cache.marks_base())


def set_marked(root: str, paths: list[str], marked: bool) -> list[str]:
    """Mark or unmark files; the indexes read the marks at their next use."""
    return toggle_marks(root, paths, marked, cache.marks_base())


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[dict[tuple, BackgroundJob], threading.Lock]:
    return {}, threading.Lock()


def _job_key(index, config: HealthConfig) -> tuple:
    return (str(findings_path(index, config, cache.marks_base())),)


def stored(index, config: HealthConfig) -> Findings | None:
    """The findings of this index and options when computed before (a job's or a file's), else None."""
    job = findings_job(index, config)
    if job is not None and job.done and job.result is not None:
        return job.result
    return load_findings(findings_path(index, config, cache.marks_base()))


def findings_job(index, config: HealthConfig, *, start: bool = False) -> BackgroundJob | None:
    """The background computation of a dataset's findings; started when asked, once per dataset and options."""
    jobs, lock = _jobs()
    key, base = _job_key(index, config), cache.marks_base()
    with lock:
        if key not in jobs and start:
            jobs[key] = BackgroundJob(lambda progress: dataset_findings(index, config, progress, base), "health")
        return jobs.get(key)


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

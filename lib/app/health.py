"""The Health page's state outside the page: findings jobs (one per dataset and options, shared by the server),
the visitor's marks, and the pictures of a duplicate pair. Findings themselves are files (lib.health.findings).

Deployed, marks and findings live under the visitor's session folder, so each visitor's marks are their own;
locally they are the dataset's, shared with the command line (`<cache>/health`).
"""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from lib.app import cache
from lib.app.jobs import BackgroundJob
from lib.data.images import load_rgb
from lib.data.marks import read_marks, toggle_marks
from lib.health.findings import Findings, HealthConfig, dataset_findings, findings_path, load_findings

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

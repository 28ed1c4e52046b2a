"""The Health page under AppTest: counts, galleries, the threshold slider, marks that the Dataset page counts."""

from __future__ import annotations

import hashlib

import pytest

from lib.data.index import build_index
from lib.data.marks import read_marks
from tests.health_helpers import PER_CLASS, planted_folder
from tests.test_app_pages import open_app


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("health_page") / "ds"
    return root, planted_folder(root)


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def mark_key(section: str, path: str) -> str:
    return f"health_mark_{section}_{hashlib.sha1(path.encode()).hexdigest()[:12]}"


def test_the_page_checks_shows_counts_and_regroups(planted):
    from lib.app import health as app_health
    from lib.health.findings import HealthConfig

    root, faults = planted
    at = open_app("pages/health.py", source="folder", path=str(root))
    assert not at.exception, at.exception
    # Under 2,000 images the check starts by itself, in the background; wait for it, then draw again.
    job = app_health.findings_job(build_index(str(root), marks=False), HealthConfig())
    assert job is not None and job.wait(300) and job.error is None
    at.run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Images"] == str(3 * PER_CLASS + 7) and shown["Duplicate groups"] == "5"
    assert shown["Label conflicts"] == "1" and int(shown["Likely wrong labels"]) >= 2 and shown["Marked"] == "0"
    assert at.slider(key="health_threshold").value == 8
    at.slider(key="health_threshold").set_value(0).run()
    assert metrics(at)["Duplicate groups"] == "2"  # only the exact copies need no bits


def test_marking_a_copy_leaves_it_out_and_the_dataset_page_counts_it(planted):
    from lib.health.findings import HealthConfig, dataset_findings

    root, faults = planted
    copy = faults["exact"][0][1]
    dataset_findings(build_index(str(root), marks=False), HealthConfig())  # stored (or computed now, run alone)
    at = open_app("pages/health.py", source="folder", path=str(root))
    assert not at.exception, at.exception
    at.checkbox(key=mark_key("dup", copy)).check().run()
    assert not at.exception, at.exception
    assert read_marks(root) == [copy] and metrics(at)["Marked"] == "1"
    assert at.checkbox(key=mark_key("dup", copy)).value
    at.switch_page("pages/dataset.py").run()
    assert metrics(at)["Marked"] == "1" and metrics(at)["Images"] == str(3 * PER_CLASS + 6)
    at.switch_page("pages/health.py").run()
    at.checkbox(key=mark_key("dup", copy)).uncheck().run()
    assert read_marks(root) == [] and metrics(at)["Marked"] == "0"

"""The Health page under AppTest: counts, galleries, the threshold slider, marks that the Dataset page counts."""

from __future__ import annotations

import hashlib
import threading
from urllib.parse import parse_qs

import numpy as np
import pytest

from lib.data.index import build_index
from lib.data.marks import read_marks
from lib.runs.store import RunStore
from tests.health_helpers import PER_CLASS, blobs, planted_folder
from tests.test_app_pages import open_app


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("health_page") / "ds"
    return root, planted_folder(root)


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache: auto is the small cnn, whatever this machine has cached."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


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


def checked(at, root, model: str, folds: int):
    """The page after the check with these options ended (it starts by itself on a small dataset)."""
    from lib.app import health as app_health
    from lib.health.findings import HealthConfig

    job = app_health.findings_job(build_index(str(root), marks=False), HealthConfig(folds, model))
    assert job is not None and job.wait(300) and job.error is None, job and job.error
    at.run()
    assert not at.exception, at.exception
    return at


def explain_links(at) -> list[dict]:
    return [parse_qs(el.proto.query_string) for el in at.get("page_link") if el.proto.label == "Explain"]


def test_options_are_kept_and_the_page_says_which_model_ran(planted):
    root, faults = planted
    at = open_app("pages/health.py", source="folder", path=str(root))
    assert at.selectbox(key="health_model").value == "auto" and at.number_input(key="health_folds").value == 5
    at.selectbox(key="health_model").set_value("linear")
    at.number_input(key="health_folds").set_value(3).run()
    checked(at, root, "linear", 3)
    said = [c.value.replace("\\", "") for c in at.caption]  # outside text is shown escaped, as plain text
    assert "Label check: logistic regression on the pixels at 16 px (64 PCA dimensions), 3 folds." in said
    at.switch_page("pages/dataset.py").run()
    at.switch_page("pages/health.py").run()
    assert at.selectbox(key="health_model").value == "linear" and at.number_input(key="health_folds").value == 3
    at.selectbox(key="health_model").set_value("probe").run()  # no backbone's weights here: one sentence
    assert not at.exception and "in torch hub's cache" in at.error[0].value.replace("\\", "")


def test_galleries_show_more_and_findings_open_on_explain_once_a_run_validated_them(tmp_path):
    from lib.__main__ import main
    from lib.settings import runs_dir

    root, rng = tmp_path / "copies", np.random.default_rng(5)
    for name, color in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for i in range(15):
            picture = blobs(rng, color, 16)
            picture.save(root / name / f"{i}.png")
            picture.save(root / name / f"{i}_copy.png", compress_level=1)  # 30 exact pairs: more than 24
    at = checked(open_app("pages/health.py", source="folder", path=str(root)), root, "auto", 5)
    assert metrics(at)["Duplicate groups"] == "30"
    leave_out = [c for c in at.checkbox if c.key.startswith("health_mark_dup_")]
    assert len(leave_out) == 2 * 24
    assert any("no run with a checkpoint has trained on this dataset" in c.value for c in at.caption)
    assert explain_links(at) == []
    at.button(key="health_more_dup").click().run()
    assert len([c for c in at.checkbox if c.key.startswith("health_mark_dup_")]) == 2 * 30
    assert not [b for b in at.button if b.key == "health_more_dup"]  # all shown: no button
    args = ["train", str(root), "--model", "linear", "--epochs", "1", "--image-size", "16", "--json"]
    assert main([*args, "--runs-dir", str(runs_dir())]) == 0
    at.run()
    run_id = RunStore(runs_dir()).list_runs()[0].id
    val = set(RunStore(runs_dir()).files.load_checkpoint(run_id, "last")["val_paths"])
    links = explain_links(at)
    assert all(link["run"] == [run_id] for link in links)
    assert {link["image"][0] for link in links} == val  # every image is in a pair: each validated one, only those
    assert not any("no run with a checkpoint" in c.value for c in at.caption)


@pytest.fixture
def held_checks(monkeypatch):
    """The server's check registry emptied, and dataset_findings replaced by one that holds until released:
    (entered: a semaphore released as each check starts computing, release: lets them all end)."""
    from lib.app import health as app_health

    app_health._jobs.clear()
    app_health._slots.clear()
    entered, release = threading.Semaphore(0), threading.Event()

    def held(index, config, progress, base):
        entered.release()
        assert release.wait(60)
        return config.folds

    monkeypatch.setattr(app_health, "dataset_findings", held)
    yield entered, release
    release.set()
    app_health._jobs.clear()
    app_health._slots.clear()


def test_no_more_than_two_checks_compute_at_once_and_the_third_waits_its_turn(planted, held_checks):
    from lib.app import health as app_health
    from lib.health.findings import HealthConfig

    entered, release = held_checks
    index = build_index(str(planted[0]), marks=False)
    jobs = [app_health.findings_job(index, HealthConfig(folds), start=True) for folds in (2, 3, 4)]
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)  # two compute...
    assert not entered.acquire(timeout=1.5)  # ...and the third does not start
    assert sum(app_health.waiting(index, HealthConfig(f)) for f in (2, 3, 4)) == 1
    assert app_health.CHECKS_AT_ONCE == 2 and not any(j.done for j in jobs)
    release.set()
    assert all(j.wait(30) for j in jobs) and [j.result for j in jobs] == [2, 3, 4]
    assert not any(app_health.waiting(index, HealthConfig(f)) for f in (2, 3, 4))


def test_deployed_a_tab_gets_two_checks_under_way_and_a_sentence_for_a_third(planted, held_checks, monkeypatch):
    from lib.app import health as app_health
    from lib.health.findings import HealthConfig

    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    entered, release = held_checks
    index = build_index(str(planted[0]), marks=False)
    first = [app_health.findings_job(index, HealthConfig(folds), start=True) for folds in (2, 3)]
    with pytest.raises(ValueError, match="This tab already has 2 health checks under way; start another when one"):
        app_health.findings_job(index, HealthConfig(4), start=True)
    assert app_health.findings_job(index, HealthConfig(4)) is None  # nothing was started
    release.set()
    assert all(j.wait(30) for j in first)
    assert app_health.findings_job(index, HealthConfig(4), start=True).wait(30)  # once they ended, it starts

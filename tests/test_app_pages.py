"""Every page opens under AppTest on the sample with no exception."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")

TIMEOUT = 120


def open_app(page: str | None = None, **params: str) -> AppTest:
    """Run the app once, on the source the query parameters name (as a shared link would).

    AppTest keeps the router's own sidebar only on the first run of a st.navigation app, so
    tests choose sources through the URL; the browser tests drive the sidebar itself.
    """
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def captions(at: AppTest) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_dataset_page_on_sample():
    at = open_app()
    assert not at.exception, at.exception
    assert at.title[0].value == "Dataset"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "640" and metrics["Classes"] == "4"
    assert len(at.get("vega_lite_chart")) >= 4
    assert len(captions(at)) == 24  # one full page of the grid


def test_grid_filters_by_class_and_pages():
    at = open_app()
    assert len(set(c.split(" ")[0] for c in captions(at))) > 1  # 'All classes' mixes them
    at.selectbox(key="grid_class").set_value("square").run()
    assert not at.exception
    shown = captions(at)
    assert shown and all(c.startswith("square ") for c in shown)
    first_page = set(shown)
    at.number_input(key="grid_page").set_value(2).run()
    second_page = set(captions(at))
    assert second_page and not first_page & second_page
    # 160 squares: the last page of 24 holds the 16 left over.
    at.number_input(key="grid_page").set_value(7).run()
    assert len(captions(at)) == 160 - 6 * 24


def test_open_folder_reports_bad_files_after_full_check(tmp_path):
    import time

    from tests.helpers import write_imagefolder, write_truncated_jpeg

    root = write_imagefolder(tmp_path / "ds", classes=("cats", "dogs"), per_class=4)
    write_truncated_jpeg(root / "cats" / "broken.jpg")
    (root / "dogs" / "notes.txt").write_text("not an image")
    at = open_app(source="folder", path=str(root))
    assert not at.exception and not at.error
    # The full check runs in the background: poll the page until it reports, with a deadline.
    deadline = time.monotonic() + 60
    while at.get("progress") and time.monotonic() < deadline:
        time.sleep(0.2)
        at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "8" and metrics["Bad files"] == "1" and metrics["Skipped"] == "1"
    bad = at.dataframe[0].value
    assert list(bad["path"]) == ["cats/broken.jpg"] and "truncated" in bad["reason"][0]


def test_a_check_that_ends_while_the_page_runs_is_shown(tmp_path, monkeypatch):
    """A small folder's full check can end after the page read its index but before it looked at the
    check: the page must still show the check's result (it once stayed on the header check for good)."""
    from lib.app import cache
    from tests.helpers import write_imagefolder, write_truncated_jpeg

    root = write_imagefolder(tmp_path / "ds", classes=("cats",), per_class=2)
    write_truncated_jpeg(root / "cats" / "broken.jpg")
    started = cache.verify_job

    def ends_at_once(root: str, *, start: bool = False):
        job = started(root, start=start)
        # The check ends right here, after `index` was read (two images: well within the deadline).
        assert job is None or job.wait(timeout=60), "the full check of two images did not end in 60 s"
        return job

    monkeypatch.setattr(cache, "verify_job", ends_at_once)
    at = open_app(source="folder", path=str(root))  # one run: no polling
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Bad files"] == "1"
    assert list(at.dataframe[0].value["path"]) == ["cats/broken.jpg"]


def test_missing_folder_is_one_sentence_error(tmp_path):
    at = open_app(source="folder", path=str(tmp_path / "nope"))
    assert not at.exception
    assert "does not exist" in at.sidebar.error[0].value
    assert at.title[0].value == "Dataset"
    assert {m.label: m.value for m in at.metric}["Images"] == "640"  # fell back to the sample

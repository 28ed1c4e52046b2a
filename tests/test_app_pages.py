"""Every page opens under AppTest on the sample with no exception."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")

TIMEOUT = 120


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
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
    assert len(set(c.split(' ')[0] for c in captions(at))) > 1  # 'All classes' mixes them
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

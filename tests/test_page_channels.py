"""The Channels page under AppTest: every mean/std choice draws without an exception."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from lib.app.cache import _stats_store
from lib.app.text import plain
from lib.charts.channels import heatmap_title, histogram_titles
from lib.charts.style import title_text
from lib.pixels.channels import NORM_CHOICES

PAGE = Path(__file__).resolve().parents[1] / "pages" / "channels.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, level, count in (("dark", 40, 4), ("light", 200, 4), ("mid", 120, 2)):
        (root / name).mkdir()
        for i in range(count):
            arr = np.clip(level + rng.normal(0, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr, "RGB").save(root / name / f"{i}.png")
    return str(root)


@pytest.fixture(autouse=True)
def _fresh_stats_store():
    # The store is process-wide (shared by sessions, as in a server); each test starts empty.
    _stats_store.clear()


def _page(dataset: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.session_state["dataset_root"] = dataset
    return at.run()


def heatmap_titles(normalized: bool) -> list[str]:
    """The three channels' heatmaps and their colour bar."""
    unit = "std units" if normalized else "[0, 1]"
    return [*(heatmap_title(c, normalized) for c in ("red", "green", "blue")), f"Colour scale ({unit})"]


def _chart_titles(at: AppTest) -> list[str]:
    return [title_text(json.loads(c.proto.spec)) for c in at.get("vega_lite_chart")]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_every_choice_draws(dataset):
    at = _page(dataset)
    assert not at.exception and at.title[0].value == "Channels"
    assert at.radio(key="norm_choice").value == "ImageNet"  # the default until the dataset's are computed
    for choice in ("ImageNet", "None", "Custom"):
        at.radio(key="norm_choice").set_value(choice).run()
        assert not at.exception and not at.error, choice
        # None says the second histogram is not normalized either (it said "after: normalized", "std units").
        assert _chart_titles(at) == [*heatmap_titles(choice != "None"), *histogram_titles(choice != "None")], choice
        if choice == "None":
            assert "not normalized" in _chart_titles(at)[5] and "std units" not in json.dumps(_chart_titles(at))
        assert "Largest difference" in _metrics(at)
        assert at.subheader[1].value == ("Not normalized ([0, 1])" if choice == "None" else "Normalized"), choice
    assert _metrics(at)["red mean"] != "+0.000"


def test_custom_values_are_used(dataset):
    at = _page(dataset)
    at.radio(key="norm_choice").set_value("Custom").run()
    none = _page(dataset)
    none.radio(key="norm_choice").set_value("None").run()
    raw_red = float(_metrics(none)["red mean"])
    at.number_input(key="norm_mean_r").set_value(0.25).run()
    at.number_input(key="norm_std_r").set_value(0.5).run()
    assert float(_metrics(at)["red mean"]) == pytest.approx((raw_red - 0.25) / 0.5, abs=2e-3)


def test_dataset_choice_needs_compute_then_becomes_default(dataset):
    at = _page(dataset)
    at.radio(key="norm_choice").set_value(NORM_CHOICES[0]).run()
    # Not computed at this size: the page still draws (unnormalized) and says so, with a button.
    assert not at.exception and at.warning and "not computed yet" in at.warning[0].value
    assert _chart_titles(at) == [*heatmap_titles(False), *histogram_titles(False)]
    at.button(key="channels_compute_here").click().run()
    assert not at.exception and at.radio(key="norm_choice").value == NORM_CHOICES[0]
    assert "10 images" in at.sidebar.caption[0].value
    assert _chart_titles(at) == [*heatmap_titles(True), *histogram_titles(True)] and not at.warning
    # A fresh session on the same dataset finds the stored statistics and defaults to them.
    again = _page(dataset)
    assert not again.exception and again.radio(key="norm_choice").value == NORM_CHOICES[0]


def test_other_widgets(dataset):
    at = _page(dataset)
    at.selectbox(key="channels_class").set_value("light").run()
    at.number_input(key="channels_image").set_value(3).run()
    at.select_slider(key="channels_size").set_value("native").run()
    at.checkbox(key="aug_hflip").check().run()
    at.slider(key="aug_rotation").set_value(30).run()
    at.number_input(key="aug_count").set_value(3).run()
    assert not at.exception and not at.error
    assert plain("light/3.png") in [c.value for c in at.caption]
    # A class with fewer images: the picked number follows instead of failing.
    at.selectbox(key="channels_class").set_value("mid").run()
    assert not at.exception and at.number_input(key="channels_image").value == 1
    assert plain("mid/1.png") in [c.value for c in at.caption]


def test_switching_dataset_keeps_working(dataset, tmp_path):
    at = _page(dataset)
    at.selectbox(key="channels_class").set_value("mid").run()
    other = tmp_path / "other"
    (other / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8), "RGB").save(other / "only" / "a.png")
    at.session_state["dataset_root"] = str(other)
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="channels_class").value == "only"


def test_missing_dataset_is_an_error_not_a_traceback(tmp_path):
    at = _page(str(tmp_path / "nowhere"))
    assert not at.exception and at.error and "not a folder" in at.error[0].value

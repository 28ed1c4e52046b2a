"""The pages as a user meets them, without a browser: chart specs, URL parameters, kept values,
refusals and the details of issue 14 (AppTest and plain functions; the browser tests read the DOM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lib.app.text import plain
from lib.charts.channels import channel_heatmaps, heatmap_title
from lib.charts.dataset import size_chart
from lib.charts.style import title_text
from lib.charts.train import accuracy_chart, lr_chart
from lib.data.explore import short_name, size_counts
from lib.data.sources import Source, find_upload, source_from_params, source_to_params, upload_path
from lib.runs.store import RunStore
from lib.settings import load_settings
from lib.training.batches import stratified_split
from lib.training.config import validation_size

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "pages" / "train.py")
APP = str(ROOT / "streamlit_app.py")


# --- charts ------------------------------------------------------------------------------------------


def _steps(lrs) -> pd.DataFrame:
    n = len(lrs)
    return pd.DataFrame(
        {"step": np.arange(1.0, n + 1), "epoch": 1.0, "train_loss": 1.0, "lr": lrs, "samples_per_sec": 1.0}
    )


def test_lr_axis_is_log_when_the_rate_spans_decades_and_linear_otherwise():
    onecycle = lr_chart(_steps(np.geomspace(4e-8, 1e-3, 50))).to_dict()
    assert onecycle["encoding"]["y"]["scale"]["type"] == "log"
    assert onecycle["encoding"]["y"]["axis"]["format"] == "~e"  # 1e-3, not 0.0e+0
    constant = lr_chart(_steps(np.full(50, 1e-3))).to_dict()
    assert "type" not in constant["encoding"]["y"]["scale"] and constant["encoding"]["y"]["scale"]["zero"] is False


def test_every_chart_sizes_its_plot_not_its_decorations():
    spec = lr_chart(_steps(np.full(5, 1e-3))).to_dict()
    assert spec["autosize"] == {"type": "fit-x", "contains": "padding"} and spec["height"] >= 180
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg" and title_text(spec) == "Learning rate"


def test_one_epoch_has_one_integer_tick_in_the_middle():
    epochs = pd.DataFrame({"epoch": [1.0], "val_accuracy": [0.5]})
    x = accuracy_chart(epochs).to_dict()["encoding"]["x"]
    assert x["axis"]["values"] == [1] and x["axis"]["format"] == "d"
    assert x["scale"]["domain"] == [0.5, 1.5]  # the single point sits mid-plot


def test_size_chart_keeps_the_largest_of_many_unique_sizes():
    # 40 photos, every size unique: the widest (609 px) was dropped when only the 30 commonest were kept.
    headers = pd.DataFrame({"width": np.arange(200, 600, 10).tolist()[:39] + [609], "height": np.arange(100, 140)})
    sizes = size_counts(headers)
    assert len(sizes) == 40 and sizes["width"].max() == 609 and (sizes["bin_px"] == 1).all()
    spec = size_chart(sizes).to_dict()
    assert spec["encoding"]["x"]["scale"]["domain"][1] > 609  # room past the widest: never clipped
    many = pd.DataFrame({"width": np.arange(5000), "height": np.arange(5000)})
    snapped = size_counts(many, max_points=100)
    assert len(snapped) <= 100 and snapped["images"].sum() == 5000 and snapped["bin_px"].iloc[0] == 64


def test_unnormalized_channels_use_a_grey_scale_over_0_1_not_the_diverging_one():
    df = pd.DataFrame({"channel": ["red"] * 4, "x": [0, 1, 0, 1], "y": [0, 0, 1, 1], "value": [0.1, 0.9, 0.5, 0.7]})
    red, *_, bar = [c.to_dict() for c in channel_heatmaps(df, normalized=False)]
    assert title_text(red) == heatmap_title("red", False) == "Red, not normalized"
    assert red["encoding"]["color"]["scale"]["domain"] == [0, 1] == bar["encoding"]["x"]["axis"]["values"]
    assert red["encoding"]["color"]["scale"]["range"] == ["#000000", "#ffffff"]  # black to white, as pixels
    wide_df = pd.DataFrame({"channel": "red", "x": [0, 1, 2, 3], "y": [0, 0, 1, 1], "value": 0.5})  # 4 x 2 cells
    square, wide = (channel_heatmaps(d)[0].to_dict() for d in (df, wide_df))
    assert square["height"] == 256 == square["width"] and square["autosize"]["type"] == "pad"  # 2 x 2 cells of 128 px
    assert wide["height"] == 128 and wide["width"] == 256  # a 2:1 image keeps its shape: cells of 64 px


def test_short_names_keep_both_ends():
    assert short_name("triangle_0109.png") == "tria…0109.png" and short_name("a.png") == "a.png"


# --- uploads in links -------------------------------------------------------------------------------


def test_an_upload_is_linked_by_a_short_content_id_found_only_in_its_session(tmp_path):
    mine, theirs = tmp_path / "s1" / "uploads", tmp_path / "s2" / "uploads"
    path = upload_path(b"zip bytes", "my photos.zip", mine)
    params = source_to_params(Source("upload", str(path)))
    assert params == {"source": "upload", "id": path.name[:12]} and str(tmp_path) not in json.dumps(params)
    assert Source("upload", str(path)).label() == "Upload my photos.zip"
    settings = load_settings({})
    assert source_from_params(params, settings, mine) == (Source("upload", str(path)), None)
    other, why = source_from_params(params, settings, theirs)
    assert other == Source("sample") and "another session" in why
    assert find_upload("../../etc", mine) is None and find_upload("*", mine) is None


# --- validation size --------------------------------------------------------------------------------


def test_validation_size_matches_the_engines_split():
    counts = [3, 3, 7, 40]
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    for split in (0.05, 0.2, 0.5):
        assert validation_size(counts, split) == len(stratified_split(targets, split, seed=0)[1])


# --- pages under AppTest ----------------------------------------------------------------------------


def _train(tmp_path, monkeypatch, **env) -> AppTest:
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(TRAIN, default_timeout=60)
    at.session_state["session_id"] = "0" * 32
    return at


def test_start_over_a_limit_is_a_sentence_under_start_and_starts_nothing(tmp_path, monkeypatch):
    at = _train(tmp_path, monkeypatch, TORCHSCOPE_MAX_EPOCHS="10").run()
    at.number_input(key="train_epochs").set_value(50).run()  # the field takes it; Start says why not
    at.button(key="train_start").click().run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [plain("This server trains at most 10 epochs; lower epochs.")]
    assert RunStore(tmp_path / "runs").list_runs() == []


def test_a_tiny_validation_set_is_warned_before_start(tmp_path, monkeypatch):
    from tests.helpers import write_imagefolder

    tiny = write_imagefolder(tmp_path / "tiny", classes=("a", "b"), per_class=3)
    at = _train(tmp_path, monkeypatch)
    at.session_state["dataset_root"] = str(tiny)
    at.run()
    assert any("only 2 images" in w.value for w in at.sidebar.warning)


def test_use_this_runs_settings_fills_the_form_and_the_url_names_the_run(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    config = {"model": "mlp", "epochs": 3, "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "hflip": True}
    old = store.create_run(config, name="old", pid=None)
    store.create_run({"model": "cnn"}, name="new")
    at = _train(tmp_path, monkeypatch)
    at.query_params["run"] = old  # a link to the older run
    at.run()
    assert at.selectbox(key="train_run").value == old and at.query_params["run"] == old
    at.button(key="train_use_settings").click().run()
    assert not at.exception
    assert at.selectbox(key="train_model").value == "mlp" and at.number_input(key="train_epochs").value == 3
    assert at.number_input(key="train_lr").value == 0.05
    assert at.checkbox(key="train_hflip").value is True and at.text_input(key="train_name").value == ""


def test_dataset_page_opens_the_class_and_page_a_link_names():
    from tests.test_app_pages import captions

    def open_app(**params: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update(params)
        return at.run()

    at = open_app(source="sample", **{"class": "square", "page": "3"})
    assert not at.exception
    assert at.selectbox(key="grid_class").value == "square" and at.number_input(key="grid_page").value == 3
    assert captions(at) and all(c.startswith("square") for c in captions(at))
    bad = open_app(source="sample", **{"class": "**nope**", "page": "999"})
    assert bad.selectbox(key="grid_class").value == "All classes" and bad.number_input(key="grid_page").value == 1


def test_a_folder_link_fills_the_path_box(tmp_path):
    from tests.helpers import write_imagefolder

    root = write_imagefolder(tmp_path / "pets", classes=("cat", "dog"), per_class=2)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(source="folder", path=str(root))
    at.run()
    assert at.sidebar.text_input(key="source_path").value == str(root)
    assert not at.sidebar.button(key="source_open").disabled


def test_the_run_name_is_cleared_after_start(tmp_path, monkeypatch):
    at = _train(tmp_path, monkeypatch).run()
    at.text_input(key="train_name").input("first")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_max_batches").set_value(1)
    at.selectbox(key="train_model").set_value("linear")
    at.button(key="train_start").click().run()
    assert not at.exception and at.text_input(key="train_name").value == ""
    (run,) = RunStore(tmp_path / "runs").list_runs()
    assert run.name == "first"
    from train_helpers import wait_for

    wait_for(lambda: RunStore(tmp_path / "runs").get_run(run.id).status != "running")


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch):
    monkeypatch.delenv("TORCHSCOPE_MODE", raising=False)
    yield
    os.environ.pop("TORCHSCOPE_MAX_EPOCHS", None)


def test_a_typed_path_opens_with_enter_and_open_is_never_disabled(tmp_path):
    from tests.helpers import write_imagefolder

    root = write_imagefolder(tmp_path / "pets", classes=("cat", "dog"), per_class=2)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="source_kind").set_value("folder").run()
    # Disabled while the box was uncommitted, Open swallowed the first click (it only committed the text).
    assert not at.sidebar.button(key="source_open").disabled
    at.sidebar.text_input(key="source_path").set_value(str(root)).run()  # typed, then Enter: no click at all
    assert not at.exception and at.session_state["dataset_root"] == str(root)
    assert at.title[0].value == "Dataset" and any(m.label == "Classes" and m.value == "2" for m in at.metric)


def test_a_typed_learning_rate_is_kept_across_a_page_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_lr").set_value(3e-4).run()  # typed: any value, not a step of a slider's list
    assert not at.exception and at.number_input(key="train_lr").value == pytest.approx(3e-4)
    at.switch_page("pages/channels.py").run()
    at.switch_page("pages/train.py").run()
    assert at.number_input(key="train_lr").value == pytest.approx(3e-4)

"""The Evaluate page under AppTest on a short trained run: headline agrees with Train, galleries show
exactly the chosen cell's images, a pair opens its cell, an image opens on Channels, predictions are reused."""

import json
import os
import shutil
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lib.app.text import plain
from lib.evaluation.predictions import stored_predictions
from lib.runs.store import RunStore
from tests.evaluate_helpers import train_short_run
from tests.test_app_pages import APP, TIMEOUT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_short_run(tmp_path_factory.mktemp("page-eval"))


def open_evaluate(trained, monkeypatch) -> AppTest:
    run_id, data, runs = trained
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(runs))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(source="folder", path=str(data))
    at.run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    return at


def gallery_captions(at: AppTest) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def expected_captions(preds, true: str, pred: str) -> set[str]:
    """Straight from the stored arrays, not through the page's helpers."""
    t, p = preds.classes.index(true), preds.classes.index(pred)
    idx = np.flatnonzero((preds.targets == t) & (preds.preds == p))
    return {plain(preds.paths[i]) for i in idx}


def test_headline_gallery_pairs_and_channels_link(trained, monkeypatch):
    run_id, data, runs = trained
    at = open_evaluate(trained, monkeypatch)
    assert at.title[0].value == "Evaluate" and at.selectbox(key="evaluate_run").value == run_id
    recorded = RunStore(runs).epochs(run_id).iloc[-1]["val_accuracy"]
    assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{recorded:.1%}"
    assert len(at.get("vega_lite_chart")) == 3  # confusion, PR, reliability
    preds = stored_predictions(RunStore(runs), run_id)
    assert preds is not None and len(preds) == 128

    # The default view is the most confused pair; the second pair's button opens its cell.
    pair_buttons = [b for b in at.button if b.key and b.key.startswith("evaluate_pair_")]
    assert pair_buttons, "a one-epoch run makes mistakes"
    target = pair_buttons[-1]
    at.button(key=target.key).click().run()
    assert not at.exception
    true, pred = at.session_state["evaluate_view"]["true"], at.session_state["evaluate_view"]["pred"]
    shown = [c.split("\n")[0].rstrip() for c in gallery_captions(at)]
    cell = expected_captions(preds, true, pred)
    # The cell's images first (at most a page of 12), then the 12 top losses, which are all mistakes.
    assert set(shown[: min(len(cell), 12)]) <= cell and len(set(shown[: min(len(cell), 12)])) == min(len(cell), 12)
    assert f"True {plain(true)}, predicted {plain(pred)}: {len(cell)} image" in [s.value for s in at.subheader][2]

    # An image of the gallery opens on Channels: its class and its number there.
    first = next(b for b in at.button if b.key and b.key.startswith("evaluate_channels_cell_"))
    at.button(key=first.key).click().run()
    assert not at.exception and at.title[0].value == "Channels"
    assert at.selectbox(key="channels_class").value == true
    assert any(c.value == shown[0] for c in at.caption)  # Channels' caption: the same relative path


def test_predictions_are_stored_once_and_reused_by_a_new_session(trained, monkeypatch):
    run_id, _, runs = trained
    open_evaluate(trained, monkeypatch)
    path = RunStore(runs).files.predictions_path(run_id)
    before = path.stat().st_mtime_ns
    import lib.evaluation.predictions as P

    monkeypatch.setattr(P, "load_model", lambda *a, **k: pytest.fail("predicted again"))
    at = open_evaluate(trained, monkeypatch)
    assert path.stat().st_mtime_ns == before and not at.get("progress")


def test_no_run_with_a_checkpoint_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    RunStore(tmp_path).create_run({"model": "cnn"})
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception and "No run has a checkpoint yet" in at.info[0].value


def test_the_views_settings_survive_a_page_switch_and_the_url_names_the_run(trained, monkeypatch):
    run_id = trained[0]
    at = open_evaluate(trained, monkeypatch)
    assert at.query_params["run"] == run_id  # a copied link opens this run
    at.radio(key="evaluate_norm").set_value("recall").run()
    at.radio(key="evaluate_order").set_value("most errors first").run()
    last = at.multiselect(key="evaluate_pr_classes").options[-1]
    at.multiselect(key="evaluate_pr_classes").set_value([last]).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    at.switch_page("pages/channels.py").run()
    assert "evaluate_norm" not in at.session_state  # Streamlit dropped the widgets: the page restores them
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert at.radio(key="evaluate_norm").value == "recall"
    assert at.radio(key="evaluate_order").value == "most errors first"
    assert at.multiselect(key="evaluate_pr_classes").value == [last]
    assert at.query_params["run"] == run_id


def test_a_running_run_is_evaluated_only_at_the_checkpoint_the_user_loads(trained, monkeypatch):
    run_id, data, runs = trained
    store = RunStore(runs)
    finished = store.get_run(run_id)
    live = store.create_run(finished.config, root=str(data), name="still-training", pid=os.getpid())  # alive
    checkpoint = store.files.checkpoint_path(live)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.files.checkpoint_path(run_id), checkpoint)
    try:
        at = open_evaluate(trained, monkeypatch)
        assert at.selectbox(key="evaluate_run").value == run_id  # the finished run, not the newer running one
        at.selectbox(key="evaluate_run").set_value(live).run()
        assert not at.exception and not at.get("vega_lite_chart") and "still training" in at.info[0].value
        at.button(key="evaluate_load").click().run()
        assert not at.exception and len(at.get("vega_lite_chart")) == 3
        accuracy = {m.label: m.value for m in at.metric}["Accuracy"]
        import lib.evaluation.predictions as P

        monkeypatch.setattr(P, "load_model", lambda *a, **k: pytest.fail("predicted again by itself"))
        os.utime(checkpoint, ns=(time.time_ns() + 10**9,) * 2)  # the next epoch's checkpoint lands
        at.run()
        assert not at.exception and {m.label: m.value for m in at.metric}["Accuracy"] == accuracy
        assert any("a newer one has landed" in c.value for c in at.caption)
        assert at.button(key="evaluate_load").label.startswith("Evaluate")
    finally:
        store.delete_runs([live])


def test_evaluate_train_and_runs_write_one_accuracy_the_same_way(trained, monkeypatch):
    """One number format for shares: the run's recorded accuracy reads alike on Evaluate and Train, one decimal."""
    run_id, _, runs = trained
    recorded = RunStore(runs).get_run(run_id).final["val_accuracy"]
    expected = f"{round(recorded * 100, 1)}%"  # by hand: 0.7109375 -> "71.1%"
    at = open_evaluate(trained, monkeypatch)
    assert f"Train recorded {expected} validation accuracy" in at.caption[0].value
    at.switch_page("pages/train.py").run()
    assert not at.exception and at.selectbox(key="train_run").value == run_id
    assert plain(f"Validation accuracy {expected}.") in at.success[0].value  # the run's status box
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    table = next(df for df in at.dataframe if "final_val_accuracy" in df.value.columns)
    assert table.value["final_val_accuracy"].iloc[0] == pytest.approx(recorded)  # a share, shown by its column
    column = json.loads(table.proto.columns)["final_val_accuracy"]
    assert column["type_config"]["format"] == "percent" and column["type_config"]["step"] == 0.001  # 71.1%


def test_the_chosen_run_survives_a_page_switch(trained, monkeypatch):
    run_id, data, runs = trained
    store = RunStore(runs)
    finished = store.get_run(run_id)
    other = store.create_run(finished.config, root=str(data), name="second")  # a finished copy of the run
    checkpoint = store.files.checkpoint_path(other)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(store.files.checkpoint_path(run_id), checkpoint)
    store.finish(other, "completed")
    try:
        at = open_evaluate(trained, monkeypatch)
        assert at.selectbox(key="evaluate_run").value == other  # the default, the latest finished: choose the older
        at.selectbox(key="evaluate_run").set_value(run_id).run()
        assert not at.exception and not at.error
        at.switch_page("pages/runs.py").run()
        at.switch_page("pages/evaluate.py").run()
        assert not at.exception and at.selectbox(key="evaluate_run").value == run_id
        assert at.query_params["run"] == run_id
    finally:
        store.delete_runs([other])

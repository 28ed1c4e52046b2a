"""The Runs page under AppTest: the table of runs, selection overlays curves, filters, diff, rename, note, delete."""

import math
from pathlib import Path

import numpy as np
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from lib.runs.store import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "runs.py")


def add_run(store: RunStore, name: str, *, lr: float, model: str = "mlp", steps: int = 30, owner=None, **cfg) -> str:
    """A finished synthetic run: `steps` steps over 3 epochs, loss falling faster for a larger lr."""
    config = {"model": model, "lr": lr, "batch_size": 8, "epochs": 3, "seed": 0, "name": name, **cfg}
    run_id = store.create_run(config, root="/data/shapes", name=name, owner=owner)
    writer = store.step_writer(run_id)
    for step in range(1, steps + 1):
        writer.step(step, 1 + (step - 1) * 3 // steps, math.exp(-lr * step), lr, 100.0)
    writer.close()
    for epoch in (1, 2, 3):
        store.record_epoch(run_id, epoch, 1 / epoch, 1 / epoch + lr, 0.5 + lr * epoch, lr, 100.0 + epoch)
    store.finish(run_id, "completed")
    return run_id


@pytest.fixture
def store(tmp_path, monkeypatch) -> RunStore:
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    return RunStore(tmp_path)


def page(session_id: str = "s1") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["session_id"] = session_id
    return at


def select(at: AppTest, rows: list[int]) -> AppTest:
    at.session_state["runs_table"] = {"selection": {"rows": rows, "columns": []}}
    return at.run()


def table(at: AppTest):
    return next(d for d in at.dataframe if d.key == "runs_table").value


def test_no_runs_says_what_to_do(store):
    at = page().run()
    assert not at.exception and "No runs yet" in at.info[0].value


def test_table_lists_runs_with_differing_hyperparameters_and_figures(store):
    a = add_run(store, "slow", lr=0.01)
    b = add_run(store, "fast", lr=0.1)
    at = page().run()
    assert not at.exception, at.exception
    t = table(at)
    assert list(t["id"]) == [b, a]  # newest first
    assert "hp.lr" in t.columns and "hp.seed" in t.columns  # every config key travels; only differing ones shown
    order = next(d for d in at.dataframe if d.key == "runs_table").proto.column_order
    assert "hp.lr" in order and "hp.seed" not in order and "hp.batch_size" not in order
    fast = t.set_index("id").loc[b]
    # Independent reference: the epochs recorded above (val acc 0.5 + lr * epoch, val loss 1/epoch + lr).
    assert fast["best_val_accuracy"] == pytest.approx(0.8) and fast["final_val_accuracy"] == pytest.approx(0.8)
    assert fast["best_val_loss"] == pytest.approx(1 / 3 + 0.1) and fast["samples_per_sec"] == pytest.approx(102.0)
    assert fast["dataset"] == "shapes" and fast["model"] == "mlp"
    assert fast["epochs_done"] == 3 and "epochs_done" in order  # epochs done shown, beside what was set
    charts = at.get("vega_lite_chart")  # a first visit draws the latest runs (both here) without a click
    assert charts and '"slow"' in charts[0].proto.spec and '"fast"' in charts[0].proto.spec
    at = select(at, [])
    assert "Tick rows" in at.caption[0].value and not at.get("vega_lite_chart")


def test_selecting_two_runs_overlays_both_and_diffs_their_config(store):
    a = add_run(store, "slow", lr=0.01, steps=3000)
    b = add_run(store, "fast", lr=0.1, optimizer="sgd")
    at = select(page().run(), [0, 1])
    assert not at.exception, at.exception
    charts = at.get("vega_lite_chart")
    assert len(charts) == 5  # loss, val loss, val accuracy, parallel coordinates, scatter
    loss = charts[0].proto.spec
    assert '"slow"' in loss and '"fast"' in loss
    diff = next(d for d in at.dataframe if d.key != "runs_table").value
    assert set(diff.index) == {"lr", "optimizer"} and list(diff.columns) == ["fast", "slow"]
    assert diff.loc["optimizer", "slow"] == "—" and diff.loc["lr", "fast"] == "0.1"
    assert at.session_state["runs_selected"] == [b, a]


def test_long_runs_are_drawn_downsampled(store):
    add_run(store, "long", lr=0.001, steps=5000)
    at = select(page().run(), [0])
    proto = at.get("vega_lite_chart")[0].proto
    rows = sum(len(convert_arrow_bytes_to_pandas_df(d.data.data)) for d in proto.datasets)
    assert 1000 < rows <= 2 * 2002  # raw and smoothed, each at most MAX_POINTS + 2 rows; not 5,000 each


def test_filters_keep_matching_runs(store):
    add_run(store, "m", lr=0.01, model="mlp")
    c = add_run(store, "c", lr=0.01, model="cnn")
    at = page().run()
    at.multiselect(key="runs_model").set_value(["cnn"]).run()
    assert list(table(at)["id"]) == [c]


def test_rename_note_and_delete_with_confirmation(store):
    a = add_run(store, "one", lr=0.01)
    b = add_run(store, "two", lr=0.1)
    at = select(page().run(), [1])  # "one"
    at.text_input(key=f"runs_name_{a}").set_value("renamed *bold*")
    at.button(key="runs_rename").click().run()
    assert store.get_run(a).name == "renamed *bold*"
    at.text_area(key=f"runs_note_{a}").set_value("too slow")
    at.button(key="runs_save_note").click().run()
    assert store.aggregates([a])[a]["note"] == "too slow"
    assert at.button(key="runs_delete").disabled  # not before the confirmation
    at.checkbox(key="runs_delete_confirm").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception, at.exception
    assert store.get_run(a) is None and [r.id for r in store.list_runs()] == [b]
    assert at.session_state["runs_selected"] == [] and at.session_state["runs_delete_confirm"] is False


def test_deployed_mode_shows_only_the_visitors_runs(store, monkeypatch):
    add_run(store, "theirs", lr=0.01, owner="other")
    mine = add_run(store, "mine", lr=0.1, owner="s1")
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = page("s1").run()
    assert list(table(at)["id"]) == [mine]


def test_summary_aggregates_match_numpy(store):
    run_id = add_run(store, "x", lr=0.05)
    figures = store.aggregates([run_id])[run_id]
    acc = np.array([0.5 + 0.05 * e for e in (1, 2, 3)])
    assert figures["best_val_accuracy"] == pytest.approx(acc.max()) and figures["epochs_done"] == 3
    assert figures["last_step"] == 30 and figures["samples_per_sec"] == pytest.approx(np.mean([101, 102, 103]))


def test_filters_selection_and_chart_settings_survive_a_page_switch(store):
    from tests.test_app_pages import APP, TIMEOUT

    add_run(store, "m", lr=0.01, model="mlp")
    c = add_run(store, "c", lr=0.03, model="cnn")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("pages/runs.py").run()
    at.multiselect(key="runs_model").set_value(["cnn"]).run()
    select(at, [0])
    at.radio(key="runs_x").set_value("epoch").run()
    at.slider(key="runs_smoothing").set_value(0.9).run()
    at.selectbox(key="runs_scatter_y").set_value("final_val_loss").run()
    assert not at.exception, at.exception
    at.switch_page("pages/channels.py").run()
    assert "runs_model" not in at.session_state  # Streamlit dropped the widgets: the page restores them
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="runs_model").value == ["cnn"] and list(table(at)["id"]) == [c]
    assert at.session_state["runs_selected"] == [c] and len(at.get("vega_lite_chart")) == 5
    assert at.radio(key="runs_x").value == "epoch" and at.slider(key="runs_smoothing").value == 0.9
    assert at.selectbox(key="runs_scatter_y").value == "final_val_loss"


def test_a_logged_runs_extra_metric_is_drawn_beside_an_app_run(store, tmp_path):
    from lib.runs.logger import start_run

    add_run(store, "app run", lr=0.1)
    with start_run("logged", config={"lr": 0.3, "model": "mine"}, runs_dir=tmp_path) as run:
        for step in range(1, 31):
            run.log(step=step, train_loss=1 / step, grad_norm=step / 4)
            if step % 10 == 0:
                run.log(step=step, epoch=step // 10, val_loss=2 / step, val_accuracy=step / 40)
    at = select(page().run(), [0, 1])
    assert not at.exception, at.exception
    assert at.selectbox(key="runs_metric").value == "grad_norm"
    charts = at.get("vega_lite_chart")
    assert len(charts) == 6  # loss, val loss, val accuracy, the extra metric, parallel coordinates, scatter
    data = pd_concat(charts[3].proto)
    assert data["value"].tolist() == [s / 4 for s in range(1, 31)] and set(data["run"]) == {"logged"}
    loss = charts[0].proto.spec
    assert '"logged"' in loss and '"app run"' in loss  # compared with the app's run on the same charts


def pd_concat(proto):
    import pandas as pd

    return pd.concat([convert_arrow_bytes_to_pandas_df(d.data.data) for d in proto.datasets], ignore_index=True)


def test_inside_overlays_one_layers_update_ratio_of_the_ticked_runs(store):
    from lib.runs.inside import write_rows

    ratios = {"calm": 1e-3, "wild": 0.5}
    for name, ratio in ratios.items():
        run_id = add_run(store, name, lr=0.01)
        rows = [(s, 1, n, 2.0, 0.1, ratio) for s in (1, 2, 3) for n in ("conv.weight", "fc.weight")]
        write_rows(store, run_id, "norms", rows)
    at = select(page().run(), [0, 1])
    assert not at.exception, at.exception
    assert at.selectbox(key="runs_inside_layer").options == ["conv.weight", "fc.weight"]
    at.selectbox(key="runs_inside_layer").set_value("fc.weight").run()
    chart = next(c for c in at.get("vega_lite_chart") if "Update ratio of fc.weight" in c.proto.spec)
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
    drawn = next(f for f in frames if "update_ratio" in f)
    assert drawn.groupby("run")["update_ratio"].max().to_dict() == ratios
    warnings = [w.value.replace("\\", "") for w in at.warning]  # plain() escapes Markdown
    assert any(w.startswith("wild: fc.weight's updates are 10^-0.3") for w in warnings), warnings
    assert not any(w.startswith("calm") for w in warnings)


IMPORTER = "0123456789abcdef0123456789abcdef"  # a session id as the app makes them (it names a session folder)


def upload(at: AppTest, data: bytes, name: str = "my runs.zip") -> AppTest:
    (box,) = at.file_uploader  # runs_import_file_<n>: a new, empty box after each import
    box.set_value((name, data, "application/zip"))
    return at.run()


def test_an_import_lists_its_runs_at_once_under_names_of_their_own(store):
    from lib.runs.export import bundle_bytes

    alpha = add_run(store, "alpha", lr=0.01)
    bundle = bundle_bytes(store, [alpha])
    at = upload(page(IMPORTER).run(), bundle)
    at.checkbox(key="runs_import_rename").check().run()
    seen = {alpha}
    for n in (2, 3):  # the same bundle twice: each copy numbered, the table and pickers current at once
        if n == 3:  # an imported file left the box (and the server's memory): picked again
            assert at.button(key="runs_import").disabled and at.file_uploader[0].value is None
            upload(at, bundle)
        at.button(key="runs_import").click().run()
        assert not at.exception, at.exception
        (new,) = set(table(at)["id"]) - seen
        seen.add(new)
        assert len(table(at)) == n and store.get_run(new).name == f"alpha ({n})"
        assert sorted(table(at)["name"]) == ["alpha", *[f"alpha ({k})" for k in range(2, n + 1)]]
        assert [s.value for s in at.success] == [f"Imported 1 run\\(s\\)\\: alpha \\({n}\\)\\."]  # plain()
        assert at.session_state["runs_selected"] == [new]  # the new run is ticked, its curves drawn
        assert at.selectbox(key="runs_edit").options == [f"alpha ({n})"]
    at.run()  # the message stays below Import until another file is picked
    assert len(at.success) == 1 and len(table(at)) == 3
    assert not upload(at, bundle, "again.zip").success


def test_a_refused_import_keeps_its_file_for_a_retry_with_new_ids(store, monkeypatch):
    from lib.app import sessions
    from lib.runs.export import bundle_bytes

    released = []
    monkeypatch.setattr(sessions, "release_upload", lambda up: released.append(up.name))
    bundle = bundle_bytes(store, [add_run(store, "alpha", lr=0.01)])
    at = upload(page(IMPORTER).run(), bundle)
    at.button(key="runs_import").click().run()
    (error,) = [e.value.replace("\\", "") for e in at.error]  # plain() escapes punctuation
    assert error.startswith("my runs.zip was refused: run ") and ".upload-" not in error, error
    assert released == [] and len(table(at)) == 1  # kept: ticking the box is enough to import it
    at.checkbox(key="runs_import_rename").check().run()
    assert not at.button(key="runs_import").disabled
    at.button(key="runs_import").click().run()
    assert not at.exception and len(table(at)) == 2 and released == ["my runs.zip"]
    at = upload(at, b"not a zip", "notes.zip")
    at.button(key="runs_import").click().run()
    (error,) = [e.value.replace("\\", "") for e in at.error]
    assert error.startswith("notes.zip is not a .zip archive") and released == ["my runs.zip", "notes.zip"]


def test_runs_sharing_a_name_read_apart_in_the_table_and_pickers(store):
    twins = [add_run(store, "same", lr=lr) for lr in (0.01, 0.1)]
    at = page().run()
    assert not at.exception, at.exception
    apart = {i: f"same ({i[-6:]})" for i in twins}  # by hand: the id's last six characters
    assert dict(zip(table(at)["id"], table(at)["name"])) == apart
    assert sorted(at.selectbox(key="runs_edit").options) == sorted(apart.values())

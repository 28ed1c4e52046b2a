"""The Train page under AppTest: form submit starts a dry run, the finished run draws its charts."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest
from train_helpers import SESSION_ID as S1
from train_helpers import wait_for

from lib.runs.store import RunStore

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")


def _page(tmp_path, monkeypatch, session_id: str = S1) -> AppTest:
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["session_id"] = session_id
    return at


def test_start_a_dry_run_from_the_form_and_see_the_loss_chart(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch).run()
    assert not at.exception and "No runs yet" in at.info[0].value
    at.selectbox(key="train_model").set_value("mlp")
    at.number_input(key="train_epochs").set_value(2)
    at.number_input(key="train_max_batches").set_value(3)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.warning
    store = RunStore(tmp_path)
    (run,) = store.list_runs()
    assert run.owner == S1 and run.config["max_batches"] == 3
    wait_for(lambda: store.get_run(run.id).status != "running")
    at.run()
    assert store.get_run(run.id).status == "completed", store.get_run(run.id).message
    assert at.selectbox(key="train_run").value == run.id
    charts = at.get("vega_lite_chart")
    assert len(charts) == 4  # loss, training accuracy per step, accuracy per epoch, learning rate
    assert any("Completed" in s.value for s in at.success)
    assert {m.label: m.value for m in at.metric}["Batch"] == "3/3"
    inside_view_draws(at, store, run.id)


def inside_view_draws(at: AppTest, store: RunStore, run_id: str) -> None:
    """The Inside view of a finished run: its five charts, a layer picked by key, the view kept across reruns."""
    import json

    at.radio(key="train_view").set_value("Inside").run()
    assert not at.exception
    titles = [json.loads(c.proto.spec)["title"]["text"] for c in at.get("vega_lite_chart")]
    assert titles[:5] == ["Update ratio by layer", "Gradient norm by layer", "Weights of 1.weight by epoch",
                          "Gradients of 1.weight by epoch", "Dead ReLU units (latest epoch)"], titles  # fmt: skip
    at.selectbox(key="train_inside_layer").set_value("3.weight").run()
    assert "Weights of 3.weight by epoch" in [
        json.loads(c.proto.spec)["title"]["text"] for c in at.get("vega_lite_chart")
    ]
    assert at.radio(key="train_view").value == "Inside"


def test_a_diverged_run_says_why_and_keeps_its_chart(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run_id = store.create_run({"model": "mlp", "epochs": 1, "batch_size": 8}, owner=S1, pid=os.getpid())
    store.record_step(run_id, 1, 1, 1.4, 10.0, 80.0)
    store.finish(run_id, "diverged", "The training loss became nan at step 2. Lower the learning rate (try 1).")
    at = _page(tmp_path, monkeypatch).run()
    assert not at.exception
    assert "Lower the learning rate" in at.error[0].value
    assert len(at.get("vega_lite_chart")) == 2  # loss and learning rate; no epoch finished


def test_deployed_mode_shows_only_this_sessions_runs(tmp_path, monkeypatch):
    RunStore(tmp_path).create_run({"model": "cnn"}, owner="someone-else")
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = _page(tmp_path, monkeypatch).run()
    assert not at.exception and "No runs yet" in at.info[0].value


def test_a_logged_run_is_followed_and_its_stop_reaches_the_script(tmp_path, monkeypatch):
    from lib.runs.logger import start_run

    with start_run("my loop", config={"lr": 0.1, "model": "mine"}, runs_dir=tmp_path, flush_s=3600) as run:
        for step in range(1, 21):
            run.log(step=step, train_loss=1 / step, lr=0.1)
        run.log(step=20, epoch=1, val_loss=0.5, val_accuracy=0.75)
        run.flush()
        at = _page(tmp_path, monkeypatch).run()
        assert not at.exception, at.exception
        assert at.selectbox(key="train_run").value == run.id and any("Training" in i.value for i in at.info)
        assert {m.label: m.value for m in at.metric} == {"Epoch": "1", "Batch": "20/?", "Samples/s": "-", "ETA": "-"}
        assert len(at.get("vega_lite_chart")) == 3  # loss, accuracy, learning rate
        at.button(key="train_stop").click().run()
        assert not run.should_stop  # read from the store at the next flush
        run.flush()
        assert run.should_stop
    assert RunStore(tmp_path).get_run(run.id).status == "stopped"

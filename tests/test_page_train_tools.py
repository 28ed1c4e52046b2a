"""Train page under AppTest: Train more continues a run as a linked child, the LR finder's result draws
its chart and sets the sidebar's learning rate, and a sweep starts from the form and stops as a whole."""

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest
from train_helpers import SESSION_ID, wait_for

from lib.__main__ import main
from lib.runs.store import RunStore
from lib.runs.sweeps import get_sweep, list_sweeps, sweep_runs
from lib.runs.view import run_view, with_parent_history

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "train.py")


def _page(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["session_id"] = SESSION_ID
    return at


def test_train_more_starts_a_child_whose_chart_draws_the_parents_steps_first(tmp_path, monkeypatch, capsys):
    args = ["train", "sample", "--model", "mlp", "--image-size", "8", "--epochs", "1", "--max-batches", "3"]
    assert main([*args, "--runs-dir", str(tmp_path), "--json"]) == 0
    parent = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    at = _page(tmp_path, monkeypatch).run()
    assert not at.exception and at.selectbox(key="train_run").value == parent
    at.number_input(key="train_more_epochs").set_value(1)
    at.button(key="train_more").click().run()
    assert not at.exception and not at.warning
    store = RunStore(tmp_path)
    child = next(r for r in store.list_runs() if r.parent == parent)
    assert at.selectbox(key="train_run").value == child.id  # the page follows the new run
    wait_for(lambda: store.get_run(child.id).status != "running")
    at.run()
    assert store.get_run(child.id).status == "completed", store.get_run(child.id).message
    assert any("Continues run" in c.value and "step 3" in c.value for c in at.caption)
    steps, epochs, first = with_parent_history(store, run_view(store, child.id))  # what the charts draw
    assert first == 4 and list(steps["step"]) == [1, 2, 3, 4, 5, 6] and list(epochs["epoch"]) == [1, 2]
    assert list(steps["train_loss"][:3]) == list(store.steps(parent)["train_loss"])


def test_the_finders_result_draws_and_sets_the_sidebar_lr(tmp_path, monkeypatch):
    lrs = np.logspace(-6, 0, 30).tolist()
    losses = [1.4 - 0.03 * i for i in range(25)] + [2, 3, 4, 6, 9]
    result = {"suggested_lr": lrs[12], "lrs": lrs, "losses": losses, "smoothed": losses, "rule": "steepest descent"}
    at = _page(tmp_path, monkeypatch)
    at.session_state["train_lrf_result"] = result
    at.run()
    assert not at.exception
    assert any(c.proto.spec and "Loss against learning rate" in c.proto.spec for c in at.get("vega_lite_chart"))
    at.button(key="train_lrf_use").click().run()
    assert not at.exception
    assert at.number_input(key="train_lr").value == float(f"{lrs[12]:.2g}")
    # Used: the panel closes (its label says what was used) so the run moves back up.
    (panel,) = [e for e in at.expander if e.label.startswith("Learning-rate finder")]
    assert panel.label == f"Learning-rate finder: {float(f'{lrs[12]:.2g}'):g} used" and not panel.proto.expanded
    assert any("diverging tail above it is clipped" in c.value for c in at.caption)  # 9 > 4 x its minimum


def test_a_sweep_starts_from_the_form_and_stop_ends_it(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch).run()
    at.selectbox(key="train_model").set_value("mlp")
    at.number_input(key="train_epochs").set_value(20)
    at.selectbox(key="train_sweep_param1").set_value("lr")
    at.text_input(key="train_sweep_values1").set_value("1e-3, 1e-2")
    at.button(key="train_sweep_start").click().run()
    assert not at.exception and not at.warning
    store = RunStore(tmp_path)
    (sweep,) = list_sweeps(store)
    assert sweep.owner == SESSION_ID and sweep.total == 2 and sweep.axes == [["lr", [1e-3, 1e-2]]]
    wait_for(lambda: sweep_runs(store, sweep.id), timeout=120)
    at.run()
    assert any("Sweep" in i.value for i in at.info)
    at.button(key="train_sweep_stop").click().run()
    done = wait_for(lambda: (s := get_sweep(store, sweep.id)).status != "running" and s)
    assert done.status == "stopped" and len(sweep_runs(store, sweep.id)) == 1


def test_a_sweep_without_values_says_what_to_do(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch).run()
    at.button(key="train_sweep_start").click().run()
    assert any("Choose a hyperparameter to vary" in e.value for e in at.error)  # said under Start


def test_train_more_on_the_runs_page_starts_a_linked_run(tmp_path, monkeypatch, capsys):
    args = ["train", "sample", "--model", "mlp", "--image-size", "8", "--epochs", "1", "--max-batches", "2"]
    assert main([*args, "--runs-dir", str(tmp_path), "--json"]) == 0
    parent = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(Path(PAGE).with_name("runs.py")), default_timeout=60)
    at.session_state["session_id"] = SESSION_ID
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert not at.exception
    at.button(key="runs_more").click().run()
    store = RunStore(tmp_path)
    child = next(r for r in store.list_runs() if r.parent == parent)
    assert at.session_state["train_follow"] == child.id  # the Train page opens on it
    wait_for(lambda: store.get_run(child.id).status != "running")
    assert store.get_run(child.id).status == "completed"


def test_a_sweeps_summary_counts_its_own_runs_after_copies_of_them_are_imported(tmp_path, monkeypatch):
    from test_runs_transfer import sweep_store

    from lib.runs.export import bundle_bytes
    from lib.runs.importer import import_bundle

    store, sweep, ids = sweep_store(tmp_path)
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(bundle_bytes(store, ids))
    for _ in range(2):
        import_bundle(bundle, store, rename=True)  # four copies of its two runs (the issue read "6 of 4")
    at = _page(tmp_path, monkeypatch)
    at.session_state["train_sweep"] = sweep
    at.run()
    assert not at.exception, at.exception
    (summary,) = [s.value.replace("\\", "") for s in at.success if "Sweep" in s.value]  # plain() escapes
    assert summary.startswith(f"Sweep {sweep}: 2 of 2 runs finished; completed.")

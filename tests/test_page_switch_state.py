"""Controls of the third pass keep their values across a page switch (issue 22): every Train sidebar field in
its expanders, the typed learning rate, the LR finder's panel (result, used rate, closed), and Channels'
normalization. Each test sets values, switches to another page and back through the router, and reads them.
Explain's method and block: tests/test_explain_run.py; Evaluate's run: tests/test_page_evaluate.py."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app_pages import APP, TIMEOUT


@pytest.fixture
def app(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


def away_and_back(at: AppTest, page: str, via: str = "pages/dataset.py") -> AppTest:
    at.switch_page(via).run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


# key: a value other than its default, one per expander (Model, Optimization, Augmentation, Data) and above them
TRAIN_VALUES = {
    "number_input": {"train_image_size": 40, "train_epochs": 7, "train_batch_size": 48, "train_lr": 3e-4,
                     "train_weight_decay": 0.0005, "train_seed": 123, "train_max_batches": 9},
    "selectbox": {"train_model": "mlp", "train_optimizer": "sgd", "train_schedule": "cosine",
                  "train_normalization": "none"},
    "checkbox": {"train_hflip": True, "train_random_crop": True},
    "slider": {"train_rotation": 30, "train_color_jitter": 0.25, "train_val_split": 0.3},
    "text_input": {"train_name": "kept-name"},
}  # fmt: skip


def test_every_train_sidebar_field_is_kept_across_a_page_switch(app):
    at = app
    at.switch_page("pages/train.py").run()
    for kind, values in TRAIN_VALUES.items():
        for key, value in values.items():
            widget = getattr(at, kind)(key=key)
            assert widget.value != value, f"{key}: pick a value other than its default"
            widget.set_value(value).run()
            assert not at.exception, (key, at.exception)
    away_and_back(at, "pages/train.py")
    for kind, values in TRAIN_VALUES.items():
        for key, value in values.items():
            assert (
                getattr(at, kind)(key=key).value == pytest.approx(value)
                if isinstance(value, float)
                else (getattr(at, kind)(key=key).value == value)
            ), key


def test_the_lr_finders_panel_and_the_rate_it_set_survive_a_page_switch(app):
    at = app
    lrs = np.logspace(-6, 0, 30).tolist()
    losses = [1.4 - 0.03 * i for i in range(25)] + [2, 3, 4, 6, 9]
    at.session_state["train_lrf_result"] = {
        "suggested_lr": lrs[12], "lrs": lrs, "losses": losses, "smoothed": losses, "rule": "steepest descent"
    }  # fmt: skip  # a finished sweep, as lib/app/train_tools.py stores it
    at.switch_page("pages/train.py").run()
    (panel,) = [e for e in at.expander if e.label.startswith("Learning-rate finder")]
    assert panel.proto.expanded  # open until its suggestion is used
    at.button(key="train_lrf_use").click().run()
    used = float(f"{lrs[12]:.2g}")
    away_and_back(at, "pages/train.py", via="pages/channels.py")
    assert at.number_input(key="train_lr").value == pytest.approx(used)
    (panel,) = [e for e in at.expander if e.label.startswith("Learning-rate finder")]
    assert panel.label == f"Learning-rate finder: {used:g} used" and not panel.proto.expanded  # still closed
    assert any(c.proto.spec and "Loss against learning rate" in c.proto.spec for c in at.get("vega_lite_chart"))


def test_channels_normalization_and_custom_values_survive_a_page_switch(app):
    at = app
    at.switch_page("pages/channels.py").run()
    at.radio(key="norm_choice").set_value("Custom").run()
    at.number_input(key="norm_mean_g").set_value(0.3).run()
    at.number_input(key="norm_std_b").set_value(0.4).run()
    at.select_slider(key="channels_size").set_value(32).run()
    assert not at.exception
    away_and_back(at, "pages/channels.py", via="pages/train.py")
    assert at.radio(key="norm_choice").value == "Custom" and at.select_slider(key="channels_size").value == 32
    assert at.number_input(key="norm_mean_g").value == 0.3 and at.number_input(key="norm_std_b").value == 0.4
    at.radio(key="norm_choice").set_value("None").run()
    away_and_back(at, "pages/channels.py")
    assert at.radio(key="norm_choice").value == "None" and at.subheader[1].value == "Not normalized ([0, 1])"

"""Train: hyperparameters in the sidebar, Start, watch loss and accuracy draw live, Stop, revisit any run.

Widget keys (stable, for tests and URLs):
    train_model, train_epochs, train_batch_size, train_lr, train_optimizer, train_weight_decay,
    train_schedule, train_image_size, train_random_crop, train_hflip, train_rotation, train_color_jitter,
    train_normalization, train_val_split, train_seed,
    train_max_batches, train_name, train_start (form submit, label "Start"), train_stop (label "Stop"),
    train_run (runs list), train_smoothing.
Chart keys: train_loss_chart (title "Loss"), train_accuracy_chart, train_lr_chart.
Session state read: dataset_root (str), session_id (str). Written: train_run (the run shown).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from lib.app import cache, sessions
from lib.app.cache import run_store
from lib.app.text import plain, plain_error
from lib.charts.series import MAX_POINTS
from lib.charts.train import accuracy_chart, loss_chart, lr_chart
from lib.data.sample import sample_root
from lib.runs.status import Status
from lib.runs.store import StoreError
from lib.runs.view import RunView, format_duration, run_label, run_view, runs_table, status_sentence
from lib.settings import runs_dir
from lib.training.config import MODELS, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, TrainConfig
from lib.training.runner import start_run, stop_run

LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 10.0)
STATUS_BOX = {
    Status.RUNNING: st.info,
    Status.COMPLETED: st.success,
    Status.STOPPED: st.info,
    Status.DIVERGED: st.error,
    Status.FAILED: st.error,
    Status.INTERRUPTED: st.warning,
}

st.title("Train")
settings = cache.settings()
if "session_id" not in st.session_state:
    st.session_state.session_id = uuid.uuid4().hex
root = st.session_state.get("dataset_root") or str(sample_root())
try:
    store = run_store(str(runs_dir()))
except StoreError as e:
    st.error(plain_error(e))
    st.stop()
if store.notice:
    st.warning(plain(store.notice))


def augmentation_fields(d: TrainConfig) -> dict:
    """The Channels page's augmentation controls, under the same labels: what is previewed there is trained here."""
    st.caption("Augmentation (training batches; preview it on the Channels page)")
    return dict(
        random_crop=st.checkbox("Random crop (reflect padding)", d.random_crop, key="train_random_crop"),
        hflip=st.checkbox("Horizontal flip", d.hflip, key="train_hflip"),
        rotation=float(st.slider("Rotation (degrees)", 0, 180, int(d.rotation), key="train_rotation")),
        color_jitter=st.slider("Colour jitter", 0.0, 1.0, d.color_jitter, 0.05, key="train_color_jitter"),
    )


def hyperparameter_form() -> TrainConfig | None:
    """The sidebar form; returns a config only when Start was pressed (tweaking restarts nothing)."""
    d = TrainConfig()
    with st.sidebar.form("train_form"):
        st.subheader("Hyperparameters")
        values = dict(
            model=st.selectbox("Model", MODELS, index=MODELS.index(d.model), key="train_model"),
            epochs=st.number_input(
                "Epochs", 1, settings.max_epochs, min(d.epochs, settings.max_epochs), key="train_epochs"
            ),
            batch_size=st.number_input("Batch size", 1, 1024, d.batch_size, key="train_batch_size"),
            lr=st.select_slider("Learning rate", LEARNING_RATES, d.lr, format_func=lambda x: f"{x:g}", key="train_lr"),
            optimizer=st.selectbox(
                "Optimizer",
                OPTIMIZERS,
                OPTIMIZERS.index(d.optimizer),
                key="train_optimizer",
                help="sgd uses momentum 0.9",
            ),
            weight_decay=st.number_input(
                "Weight decay", 0.0, 1.0, d.weight_decay, format="%.5f", key="train_weight_decay"
            ),
            schedule=st.selectbox("LR schedule", SCHEDULES, SCHEDULES.index(d.schedule), key="train_schedule"),
            image_size=st.number_input(
                "Image size (px)", 8, settings.max_image_size, d.image_size, key="train_image_size"
            ),
            **augmentation_fields(d),
            normalization=st.selectbox(
                "Normalization", NORMALIZATIONS, NORMALIZATIONS.index(d.normalization), key="train_normalization"
            ),
            val_split=st.slider("Validation split", 0.05, 0.5, d.val_split, 0.05, key="train_val_split"),
            seed=st.number_input("Seed", 0, 2**31 - 1, d.seed, key="train_seed"),
            max_batches=st.number_input("Batches per epoch (0 = all)", 0, 100_000, 0, key="train_max_batches") or None,
            name=st.text_input("Run name (optional)", key="train_name"),
        )
        if not st.form_submit_button("Start", key="train_start", type="primary"):
            return None
    try:
        return TrainConfig(**values)
    except ValueError as e:
        st.warning(plain_error(e))
        return None


def start(config: TrainConfig) -> None:
    try:
        visitor = sessions.visitor_id(
            st.session_state.session_id, st.context.ip_address, st.context.headers.get("User-Agent")
        )
        st.session_state.train_run = start_run(
            config, root, store, st.session_state.session_id, settings=settings, visitor=visitor
        )
    except (ValueError, StoreError) as e:
        st.warning(plain_error(e))


def draw(view: RunView) -> None:
    """Status, progress, and the charts of one run."""
    record, p = view.record, view.progress
    STATUS_BOX.get(record.status, st.info)(plain(status_sentence(record)))
    if p.total_steps:
        st.progress(p.fraction, text=f"Epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.steps_per_epoch}")
    cols = st.columns(4)
    cols[0].metric("Epoch", f"{p.epoch}/{p.epochs}")
    cols[1].metric("Batch", f"{p.batch}/{p.steps_per_epoch or '?'}")
    cols[2].metric("Samples/s", f"{p.samples_per_sec:,.0f}" if p.samples_per_sec else "-")
    cols[3].metric("ETA", format_duration(p.eta_s))
    if view.steps.empty:
        st.caption("No batch has finished yet.")
        return
    n = len(view.steps)
    st.caption(
        f"Steps recorded: {n:,}"
        + (
            f"; drawn as at most {MAX_POINTS:,} points per line, each bucket's "
            "minimum and maximum kept, so no spike is hidden"
            if n > MAX_POINTS
            else ""
        )
    )
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="train_smoothing")
    st.altair_chart(
        loss_chart(view.steps, view.epochs, smoothing=smoothing, steps_per_epoch=p.steps_per_epoch),
        width="stretch",
        key="train_loss_chart",
    )
    left, right = st.columns(2)
    if not view.epochs.empty:
        left.altair_chart(accuracy_chart(view.epochs), width="stretch", key="train_accuracy_chart")
    right.altair_chart(lr_chart(view.steps), width="stretch", key="train_lr_chart")


def show(run_id: str, running: bool) -> None:
    """Draw run_id; while it trains, redraw from the store every second without rerunning the page."""

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        sessions.touch(st.session_state.session_id)  # a tab watching a run is not idle
        try:
            view = run_view(store, run_id)
        except StoreError as e:
            st.error(plain_error(e))
            return
        if view is None:
            st.info("That run is no longer in the store.")
            return
        if view.record.status == Status.RUNNING and st.button("Stop", key="train_stop"):
            stop_run(run_id, store)
            st.toast("Stopping after the current batch.")
        draw(view)
        if running and view.record.status != Status.RUNNING:
            st.rerun(scope="app")  # the run ended: refresh the runs list and stop polling

    live()


config = hyperparameter_form()
if config is not None:
    start(config)
try:
    runs = store.list_runs(st.session_state.session_id if settings.deployed else None)
except StoreError as e:
    st.error(plain_error(e))
    st.stop()
if not runs:
    st.info("No runs yet: set hyperparameters in the sidebar and press Start.")
    st.stop()
labels = {r.id: run_label(r) for r in runs}
if st.session_state.get("train_run") not in labels:
    st.session_state.train_run = runs[0].id
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="train_run")
record = next(r for r in runs if r.id == run_id)
with st.expander(f"All runs ({len(runs)})"):
    st.dataframe(
        runs_table(runs),
        hide_index=True,
        column_config={
            "val accuracy": st.column_config.NumberColumn(format="percent"),
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
with st.expander("Configuration"):
    # A deployment shows the dataset's folder name only, never where the server keeps it.
    dataset = Path(record.root).name if settings.deployed else record.root
    st.json({"run_id": record.id, "dataset": dataset, **record.config})
show(run_id, record.status == Status.RUNNING)

"""Runs: every run in one table; tick rows to overlay their curves, compare settings, export, rename, delete.

Widget keys (stable, for tests and URLs):
    runs_status, runs_dataset, runs_model (filters), runs_table (dataframe row selection), runs_x (x axis),
    runs_smoothing, runs_scatter_x, runs_scatter_y, runs_csv, runs_bundle, runs_ckpt_run, runs_ckpt_which,
    runs_checkpoint (downloads), runs_edit (run to edit), runs_name_<run id>, runs_rename, runs_note_<run id>, runs_save_note,
    runs_delete, runs_delete_confirm, runs_import_file_<n> (in the container runs_import_upload; n grows with
    each import, so the box is empty again), runs_import_rename, runs_import; runs_more_run,
    runs_more_epochs, runs_more ("Train more", lib/app/train_tools.py); runs_metric (an extra metric of logged
    or imported runs, shown when a selected run has one); runs_inside_layer (the tensor whose update ratio is
    overlaid).
Chart keys: runs_loss_chart, runs_val_loss_chart, runs_accuracy_chart, runs_metric_chart, runs_ratio_chart,
runs_parallel_chart, runs_scatter_chart.
Kept across page switches (lib.app.state): the filters, runs_x, runs_smoothing, runs_inside_layer, runs_scatter_x,
runs_scatter_y.
Session state read: session_id (str). Written: runs_selected (the selected run ids, kept across pages),
runs_imported (what the last import added, shown below Import until the next file or import), runs_import_gen
(the uploader's n: an imported or refused file leaves the box, as it left the server's memory), runs_reselect
(set when the rows change: the table's selection is set again from runs_selected).
"""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from lib.app import cache, repairs, sessions
from lib.app.layout import scroller
from lib.app.numbers import percent_column
from lib.app.state import keep
from lib.app.text import file_stem, plain, plain_error
from lib.app.train_tools import train_more
from lib.charts.inside import layer_order, overlay_ratio_chart
from lib.charts.runs import (
    overlay_epoch_chart,
    overlay_loss_chart,
    overlay_metric_chart,
    parallel_chart,
    scatter_chart,
)
from lib.charts.series import MAX_POINTS
from lib.runs import compare
from lib.runs.export import PLAIN_TORCH, bundle_bytes, checkpoint_bytes, checkpoint_files, csv_bytes
from lib.runs.importer import IdTaken, Limits, import_bundle
from lib.runs.inside import inside_view, update_ratios
from lib.runs.status import Status
from lib.runs.store import StoreError
from lib.settings import runs_dir
from lib.training.config import accept_imported_config
from lib.training.resume import RESUMABLE

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

LATEST = 3  # runs ticked on a first visit
COLUMNS = {
    "name": st.column_config.TextColumn("name", pinned=True),  # stays in view as a narrow table scrolls
    "best_val_accuracy": percent_column("best val acc"),
    "final_val_accuracy": percent_column("final val acc"),
    "best_val_loss": st.column_config.NumberColumn("best val loss", format="%.4f"),
    "final_val_loss": st.column_config.NumberColumn("final val loss", format="%.4f"),
    "duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    "samples_per_sec": st.column_config.NumberColumn("samples/s", format="%.0f"),
    "epochs_done": st.column_config.NumberColumn("epochs done", format="%d"),
    "sweep_winner": st.column_config.CheckboxColumn("sweep winner", help="Best final val accuracy of its sweep"),
    "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
}

st.title("Runs")
settings = cache.settings()
if "session_id" not in st.session_state:
    st.session_state.session_id = uuid.uuid4().hex
root = str(runs_dir())
owner = st.session_state.session_id if settings.deployed else None
try:
    store = cache.run_store(root)
    summary = compare.summary_frame(store, owner)
except StoreError as e:
    st.error(plain_error(e))
    st.stop()
if store.recent_notice():
    st.warning(plain(store.recent_notice()))
if st.session_state.get("runs_error"):  # set by a callback, which cannot draw
    st.error(plain(st.session_state.pop("runs_error")))


def forget_selection() -> None:
    """The table's selection is row positions: after the rows change, select again from the kept run ids.
    run_table sets the selection itself, so the browser's grid ticks the rows the charts draw (dropping the
    state left the browser's old ticks, which it sent back on the next click)."""
    st.session_state.runs_reselect = True


def import_box() -> None:
    """Upload a bundle (.zip from Export or `python -m lib export`); refused bundles say why in one line."""
    with st.expander("Import runs (.zip bundle)"), st.container(key="runs_import_upload"):
        up = st.file_uploader(
            f"Run bundle (up to {settings.max_upload_mb} MB)",
            type=["zip"],
            key=f"runs_import_file_{st.session_state.get('runs_import_gen', 0)}",
            max_upload_size=settings.max_upload_mb,
            on_change=lambda: st.session_state.pop("runs_imported", None),  # a new file: the last import is told
        )
        rename = st.checkbox("Give runs whose id is taken a new id", key="runs_import_rename")
        if st.button("Import", key="runs_import", disabled=up is None) and up is not None:
            import_upload(up, rename)
        if st.session_state.get("runs_imported"):  # set before the rerun that lists the new runs; below the
            st.success(plain(st.session_state.runs_imported))  # button, so the box stays as it was (open)


def import_upload(up, rename: bool) -> None:
    """Import an uploaded bundle, then rerun so the table and every picker list the new runs at once."""
    st.session_state.pop("runs_imported", None)
    if up.size > settings.max_upload_mb * 2**20:
        sessions.release_upload(up)
        next_uploader()
        st.error(f"That bundle is over this app's {settings.max_upload_mb} MB limit; export fewer runs.")
        return
    path = store.root / f".upload-{uuid.uuid4().hex}.zip"
    room = sessions.disk_room(st.session_state.session_id, settings, store)  # imported checkpoints count too
    if up.size * 2 > room:  # the bundle and what it unpacks to are on disk together for a moment
        sessions.release_upload(up)
        next_uploader()
        st.error(
            f"Importing that bundle needs more disk than is left for this session ({room / 2**20:,.0f} MB, up to "
            f"{settings.max_session_mb:,} MB); delete runs first."
        )
        return
    keep_upload = False
    try:
        path.write_bytes(up.getvalue())
        limits = Limits(settings.max_archive_files, min(settings.max_archive_mb * 2**20, room - up.size))
        ids = import_bundle(path, store, rename=rename, owner=owner, limits=limits, name=up.name,
                            check_config=lambda config: accept_imported_config(config, settings))  # fmt: skip
    except IdTaken as e:  # ticking "Give runs whose id is taken a new id" imports it: keep the file picked
        keep_upload = True
        st.error(plain_error(e))
        return
    except (ValueError, OSError, StoreError) as e:
        st.error(plain_error(e))  # names the uploaded file and its members: outside text
        return
    finally:
        path.unlink(missing_ok=True)
        if not keep_upload:  # imported, or refused for good: the bundle's bytes need not stay in memory
            sessions.release_upload(up)
            next_uploader()
    forget_selection()
    st.session_state.runs_selected = list(ids.values())
    names = [store.get_run(i).name for i in ids.values()]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    st.session_state.runs_imported = f"Imported {len(ids)} run(s): {', '.join(names[:5])}{more}."
    cache.run_curves.clear()  # keyed by run id: a run deleted here may come back under its id
    cache.run_metrics.clear()
    st.rerun()  # the table, its counts and every run picker were drawn from the store before this import


def next_uploader() -> None:
    """An empty upload box from the next run on: the released file is gone from the server (a click on Import
    with the old box still showing it did nothing), and the old box's state leaves with it."""
    st.session_state.runs_import_gen = st.session_state.get("runs_import_gen", 0) + 1


def filtered(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows the three filters keep (an empty filter keeps everything)."""
    cols = st.columns(3)
    rows = pd.Series(True, index=summary.index)
    for col, field in zip(cols, ("status", "dataset", "model"), strict=True):
        options = sorted(summary[field].dropna().astype(str).unique())
        keep(f"runs_{field}", [], valid=lambda v, known=set(options): set(v) <= known)
        chosen = col.multiselect(field.capitalize(), options, key=f"runs_{field}", on_change=forget_selection)
        if chosen:
            rows &= summary[field].astype(str).isin(chosen)
    return summary[rows].reset_index(drop=True)


def run_table(shown: pd.DataFrame, hp: list[str], labels: dict[str, str]) -> list[str]:
    """The table with row selection, runs named by their labels (a repeated name with its short id);
    returns the selected run ids (also kept in session state)."""
    hp = [c for c in hp if c != "hp.model"]  # the model has its own column
    # Epochs done, then what was set: a run stopped at epoch 2 of 10 read as "10".
    order = [
        "name",
        "status",
        "dataset",
        "model",
        "epochs_done",
        *hp,
        *compare.METRICS,
        "duration_s",
        "samples_per_sec",
    ]
    order += [c for c in (*compare.LINKS, "sweep_winner") if c in shown.columns] + ["created", "note"]
    # On a first visit the latest runs are ticked, so their curves are drawn without a click (as W&B does).
    kept = st.session_state.get("runs_selected", list(shown["id"].iloc[:LATEST]))
    default = [i for i, run_id in enumerate(shown["id"]) if run_id in kept]
    if st.session_state.pop("runs_reselect", False):
        st.session_state.runs_table = {"selection": {"rows": default, "columns": []}}
    event = st.dataframe(
        compare.spreadsheet_safe(shown.assign(name=shown["id"].map(labels))),  # its CSV download writes no formula
        key="runs_table",
        on_select="rerun",
        selection_mode="multi-row",
        selection_default={"selection": {"rows": default}},
        hide_index=True,
        width="stretch",
        placeholder="—",
        column_order=order,
        column_config={**COLUMNS, **{c: st.column_config.Column(c.removeprefix("hp.")) for c in hp}}
        | {"hp.epochs": st.column_config.Column("epochs set")},
    )
    selected = [shown["id"].iloc[i] for i in event.selection.rows if i < len(shown)]
    st.session_state.runs_selected = selected
    return selected


def curve_charts(summary: pd.DataFrame, selected: list[str], labels: dict[str, str]) -> None:
    """Training loss, validation loss and accuracy of the selected runs, overlaid."""
    left, right = st.columns([2, 1])
    keep("runs_x", next(iter(compare.X_AXES)), options=list(compare.X_AXES))
    keep("runs_smoothing", 0.6, valid=lambda v: isinstance(v, float) and 0.0 <= v <= 0.99)
    x = left.radio("X axis", list(compare.X_AXES), format_func=compare.X_AXES.get, horizontal=True, key="runs_x")
    smoothing = right.slider("Smoothing", 0.0, 0.99, step=0.01, key="runs_smoothing")
    budget = max(200, MAX_POINTS // len(selected))  # the whole chart stays a few thousand points
    steps, epochs = [], []
    rows = summary.set_index("id")
    for run_id in selected:
        batch = compare.batch_size(rows.loc[run_id])
        s, e = cache.run_curves(root, run_id, rows.loc[run_id, "heartbeat"], batch, smoothing, budget)
        steps.append(s.assign(run=labels[run_id]))
        epochs.append(e.assign(run=labels[run_id]))
    names = [labels[i] for i in selected]
    steps, epochs = pd.concat(steps, ignore_index=True), pd.concat(epochs, ignore_index=True)
    if steps.empty:
        st.caption("None of the selected runs has recorded a step yet.")
        return
    st.altair_chart(overlay_loss_chart(steps, names, x), width="stretch", key="runs_loss_chart")
    if epochs.empty:
        return
    left, right = st.columns(2)
    left.altair_chart(overlay_epoch_chart(epochs, names, "val_loss", x), width="stretch", key="runs_val_loss_chart")
    right.altair_chart(
        overlay_epoch_chart(epochs, names, "val_accuracy", x), width="stretch", key="runs_accuracy_chart"
    )


def metric_chart(summary: pd.DataFrame, selected: list[str], labels: dict[str, str]) -> None:
    """The other metrics logged or imported runs recorded (any name), one chosen at a time, overlaid."""
    rows = summary.set_index("id")
    frames = [cache.run_metrics(root, i, rows.loc[i, "heartbeat"]).assign(run=labels[i]) for i in selected]
    metrics = pd.concat(frames, ignore_index=True)
    names = sorted(metrics["name"].unique())
    if not names:
        return
    keep("runs_metric", names[0], options=names)
    name = st.selectbox("Other metric", names, key="runs_metric", help="Recorded by a logged or imported run")
    data = compare.metric_series(metrics, name, max(200, MAX_POINTS // len(selected)))
    st.altair_chart(
        overlay_metric_chart(data, [labels[i] for i in selected], name), width="stretch", key="runs_metric_chart"
    )


def inside_charts(selected: list[str], labels: dict[str, str]) -> None:
    """One tensor's update ratio in every selected run that recorded it, overlaid, and each run's rule sentences."""
    views = {run_id: inside_view(store, run_id) for run_id in selected}
    names = list(dict.fromkeys(n for v in views.values() for n in layer_order(v.norms)))
    if not names:
        st.caption("None of the selected runs recorded its layers (runs from before issue 21, or logged ones).")
        return
    keep("runs_inside_layer", names[0], options=names)
    name = st.selectbox("Layer", names, key="runs_inside_layer", help="A parameter tensor, by its state_dict name")
    frame = update_ratios(store, selected, name, labels)
    st.altair_chart(overlay_ratio_chart(frame, name), width="stretch", key="runs_ratio_chart")
    for run_id, view in views.items():
        for sentence in view.sentences:
            st.warning(plain(f"{labels[run_id]}: {sentence}"))


def hparam_charts(summary: pd.DataFrame, hp: list[str], selected: list[str], labels: dict[str, str]) -> None:
    """Parallel coordinates over the differing hyperparameters and the final metrics; a chosen scatter."""
    metrics = ["final_val_accuracy", "final_val_loss"]
    axes = hp + metrics
    frame = compare.parallel_frame(summary, axes)
    names = [a.removeprefix("hp.") for a in axes]
    st.caption("Each axis runs from its smallest value (bottom) to its largest (top).")
    with scroller(key="runs_parallel"):  # its own width: a narrow page scrolls it rather than crushing its axes
        st.altair_chart(parallel_chart(frame, labels, selected, names), width="content", key="runs_parallel_chart")
    options = hp or [c for c in summary.columns if c.startswith("hp.")]
    left, right = st.columns(2)
    keep("runs_scatter_x", options[0] if options else None, options=options)
    keep("runs_scatter_y", next(iter(compare.METRICS)), options=list(compare.METRICS))
    x = left.selectbox("Hyperparameter", options, format_func=lambda c: c.removeprefix("hp."), key="runs_scatter_x")
    y = right.selectbox("Metric", list(compare.METRICS), format_func=compare.METRICS.get, key="runs_scatter_y")
    numeric = pd.to_numeric(summary[x], errors="coerce")
    log = bool(numeric.notna().all() and numeric.min() > 0 and numeric.max() > 10 * numeric.min())
    st.altair_chart(
        scatter_chart(summary, x, y, labels, selected, x_log=log), width="stretch", key="runs_scatter_chart"
    )


def downloads(selected: list[str], labels: dict[str, str]) -> None:
    """Every metric of the selected runs as one long CSV, a bundle of them, and one checkpoint alone."""
    left, mid = st.columns(2)
    stem = file_stem([labels[i] for i in selected])  # named after the runs, not "runs-metrics"
    left.download_button(
        "Metrics (long CSV, every step)",
        lambda: csv_bytes(store, selected),
        file_name=f"{stem}-metrics.csv",
        mime="text/csv",
        on_click="ignore",
        key="runs_csv",
    )
    mid.download_button(
        "Run bundle (.zip)",
        lambda: bundle_bytes(store, selected, private=settings.deployed),  # deployed: no server paths or sessions
        file_name=f"{stem}.zip",
        mime="application/zip",
        on_click="ignore",
        key="runs_bundle",
    )
    with st.expander("Checkpoint alone, and how to load it in plain torch"):
        run_id = st.selectbox("Run", selected, format_func=labels.get, key="runs_ckpt_run")
        files = {k: v for k, v in checkpoint_files(store, run_id).items() if k in ("last.pt", "best.pt")}
        if not files:
            st.caption("This run saved no checkpoint: a run saves one at each epoch end and when stopped.")
            return
        which = st.radio("Checkpoint", sorted(files, reverse=True), horizontal=True, key="runs_ckpt_which")
        st.download_button(
            f"Download {which}",
            lambda: checkpoint_bytes(files[which], private=settings.deployed),
            file_name=f"{file_stem([labels[run_id]])}-{which}",
            on_click="ignore",
            key="runs_checkpoint",
        )
        st.code(PLAIN_TORCH.format(file=f"{file_stem([labels[run_id]])}-{which}"), language="python")


def write(change, *args) -> None:
    """Apply a change to the store and redraw; a store that cannot be written says so in one line."""
    try:
        change(*args)
    except StoreError as e:
        st.error(plain_error(e))
        return
    st.rerun()


def delete_run(run_id: str, selected: list[str]) -> None:
    """The Delete button's callback: it runs before the rerun, so the confirmation can be unticked."""
    try:
        store.delete_runs([run_id])
    except StoreError as e:
        st.session_state.runs_error = str(e)
        return
    forget_selection()
    st.session_state.runs_selected = [i for i in selected if i != run_id]
    st.session_state.runs_delete_confirm = False


def manage(summary: pd.DataFrame, selected: list[str], labels: dict[str, str]) -> None:
    """Rename, note and delete (with a confirmation) one of the selected runs."""
    with st.expander("Rename, note or delete"):
        run_id = st.selectbox("Run", selected, format_func=labels.get, key="runs_edit")
        row = summary.set_index("id").loc[run_id]
        left, right = st.columns([3, 1])
        name = left.text_input("Name", row["name"], key=f"runs_name_{run_id}")
        if right.button("Rename", key="runs_rename"):
            write(store.rename_run, run_id, name)
        note = st.text_area("Note", row["note"], key=f"runs_note_{run_id}")
        if st.button("Save note", key="runs_save_note"):
            write(store.set_note, run_id, note)
        running = row["status"] == Status.RUNNING
        sure = st.checkbox("Yes, delete this run and its checkpoints", key="runs_delete_confirm", disabled=running)
        st.button(
            "Delete run",
            key="runs_delete",
            disabled=not sure or running,
            type="primary",
            on_click=delete_run,
            args=(run_id, selected),
        )
        if running:
            st.caption("A running run cannot be deleted; stop it on the Train page first.")


import_box()
if summary.empty:
    st.info("No runs yet: train one on the Train page, or import a bundle above.")
    st.stop()
shown = filtered(summary)
hp = compare.differing_keys(shown)
labels = compare.run_labels(summary)
selected = run_table(shown, hp, labels)
if not selected:
    st.caption(f"{len(shown)} of {len(summary)} runs shown. Tick rows to compare their curves and settings.")
    st.stop()
st.subheader("Curves")
curve_charts(summary, selected, labels)
metric_chart(summary, selected, labels)
st.subheader("Inside")
inside_charts(selected, labels)
st.subheader("Hyperparameters")
hparam_charts(shown, hp, selected, labels)
st.subheader("Configuration differences")
diff = compare.config_diff(summary, selected)
if diff.empty:
    st.caption("The selected runs share every setting.")
else:
    st.dataframe(diff, width="stretch")
st.subheader("Export")
downloads(selected, labels)
manage(summary, selected, labels)
with st.expander("Train more"):  # continue a run as a new, linked one; the Train page then shows it
    more_id = st.selectbox("Run", selected, format_func=labels.get, key="runs_more_run")
    more_run = store.get_run(more_id)
    if more_run is None or more_run.status not in RESUMABLE:
        st.caption("Only a stopped, completed or interrupted run with a checkpoint can train more.")
    else:
        train_more(more_run, store, st.session_state.get("session_id"), settings, key="runs", switch=True)

"""Evaluate: where a trained run fails, down to the image.

Widget keys (stable, for tests and URLs):
    evaluate_run            the run (only runs with a checkpoint; by default the Train page's run once finished,
                            else the latest finished run)
    evaluate_load           a running run's button: evaluate the checkpoint it has now (never by itself)
    evaluate_norm           confusion colour: counts, recall (row share), precision (column share)
    evaluate_order          class order: "class order" or "most errors first"
    evaluate_confusion      the heatmap (click a cell: its images show below)
    evaluate_classes        per-class table (select a row: that class's mistakes show below)
    evaluate_pair_<i>       the i-th most confused pair's button (opens its cell)
    evaluate_page           the gallery's page
    evaluate_pr_classes     classes drawn in the PR chart
    evaluate_channels_<i>   open gallery image i on the Channels page
Containers (CSS .st-key-<name>): evaluate_gallery, evaluate_top_losses.
Kept across page switches (lib.app.state): evaluate_run (also ?run= in the URL), evaluate_norm, evaluate_order,
evaluate_page, evaluate_pr_classes.
Session state read: train_run, dataset_root, source, session_id. Written: evaluate_view (what the gallery
shows: run, true, pred, errors), channels_class and channels_image (when opening an image on Channels).
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from lib.app import cache, repairs
from lib.app.cache import run_store
from lib.app.imported import dataset_picked
from lib.app.layout import HALF, THUMB, tiles
from lib.app.numbers import percent
from lib.app.state import keep, set_value
from lib.app.text import plain, plain_error
from lib.charts.evaluate import (
    CELL,
    NORMALIZE,
    confusion_frame,
    confusion_heatmap,
    error_order,
    pr_chart,
    reliability_chart,
)
from lib.data.sources import source_to_params
from lib.evaluation.metrics import confused_pairs, images_of, top_losses
from lib.runs.status import Status
from lib.runs.view import run_labels
from lib.settings import runs_dir

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

PER_PAGE = 12
THUMB_PX = 112
ORDERS = ("class order", "most errors first")
EXPLAIN = Path(__file__).with_name("explain.py")

st.title("Evaluate")
settings = cache.settings()
store = run_store(str(runs_dir()))
owner = st.session_state.get("session_id") if settings.deployed else None
runs = [r for r in store.list_runs(owner) if store.files.checkpoint_path(r.id).exists()]
if not runs:
    st.info("No run has a checkpoint yet: train one on the Train page (a run saves one at the end of each epoch).")
    st.stop()
labels = run_labels(runs)
finished = [r.id for r in runs if r.status != Status.RUNNING]
# Kept across page switches and named in the URL (?run=); on a first visit, the Train page's run once it has
# finished, else the latest finished run: a run still training changed its matrix under the user.
train_run = st.session_state.get("train_run")
keep("evaluate_run", train_run if train_run in finished else (finished or list(labels))[0],
     options=list(labels), param="run")  # fmt: skip
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="evaluate_run")
record = next(r for r in runs if r.id == run_id)
if not dataset_picked(record, store):  # an imported run reads only a dataset its owner opened
    st.stop()


def pinned(key: str):
    """A running run's evaluation at the checkpoint the user loaded, or None when they ask for the latest.
    Stops the page until they load one: a new checkpoint never re-predicts by itself."""
    chosen = st.session_state.setdefault("evaluate_pinned", {})
    if st.session_state.pop("evaluate_load_now", None) == run_id:  # the button's callback (a click survives reruns)
        chosen[run_id] = key
        return None
    held = chosen.get(run_id)
    found = cache.stored_evaluation(run_id, held) if held else None
    epoch = record.final.get("epoch")
    label = f"Evaluate the checkpoint of epoch {epoch:.0f}" if epoch is not None else "Evaluate its latest checkpoint"
    load_now = {"key": "evaluate_load", "on_click": lambda: st.session_state.update(evaluate_load_now=run_id)}
    if found is None:
        st.info("This run is still training: its checkpoint changes each epoch. Load one to evaluate it.")
        st.button(label, type="primary", **load_now)
        st.stop()
    newer = "" if held == key else "; a newer one has landed"
    st.caption(f"This run is still training: shown at the checkpoint you loaded{newer}.")
    if held != key:
        st.button(label, **load_now)
    return held, found


def load():
    """The run's evaluation: from memory or the run store, else predicted now with a progress bar."""
    key = cache.evaluation_key(run_id)
    if record.status == Status.RUNNING and (held := pinned(key)) is not None:
        return held
    found = cache.stored_evaluation(run_id, key)
    if found is None:
        bar = st.progress(0.0, text="Predicting over the validation split…")
        found = cache.evaluate_run(
            run_id, lambda done, total: bar.progress(done / total, f"Predicting: {done:,} / {total:,} images")
        )
        bar.empty()
    return key, found


try:
    key, evaluation = load()
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
preds, m = evaluation


def choose(run: str, true: str | None, pred: str | None, errors: bool = False) -> None:
    """Show these images of run in the gallery, from its first page."""
    st.session_state.evaluate_view = {"run": run, "true": true, "pred": pred, "errors": errors}
    set_value("evaluate_page", 1)


def on_cell(run: str) -> None:
    clicked = st.session_state.evaluate_confusion["selection"].get(CELL) or []
    if clicked:
        choose(run, clicked[0]["true"], clicked[0]["pred"])


def on_class(run: str, classes: list[str]) -> None:
    rows = st.session_state.evaluate_classes["selection"]["rows"]
    if rows:
        choose(run, classes[rows[0]], None, errors=True)


# --- headline ------------------------------------------------------------------------------------
cols = [*st.columns(3), *st.columns(3)]  # two rows: whole numbers even in a narrow window
cols[0].metric("Accuracy", percent(m.accuracy))
cols[1].metric("Top-5 accuracy", percent(m.top5_accuracy),
               help=None if m.top5_accuracy is not None else "Needs more than 5 classes.")  # fmt: skip
cols[2].metric("Balanced accuracy", percent(m.balanced_accuracy), help="Mean recall over classes")
cols[3].metric("Macro F1", f"{m.macro_f1:.3f}")
cols[4].metric("NLL", f"{m.nll:.3f}", help="Mean cross-entropy of the true class, nats")
cols[5].metric("ECE", f"{m.ece:.3f}", help="Expected calibration error over 15 equal-width confidence bins")
recorded = record.final.get("val_accuracy")
st.caption(
    f"{m.num_images:,} validation images of this run, predicted once from its last checkpoint and stored with the run."
    + (f" Train recorded {percent(recorded)} validation accuracy at epoch {record.final['epoch']:.0f}." if recorded is not None else "")
)  # fmt: skip
if preds.bad:
    with st.expander(f"{len(preds.bad)} validation images are left out (marked, or no longer decode)"):
        st.dataframe({"path": [p for p, _ in preds.bad], "reason": [r for _, r in preds.bad]}, hide_index=True)

# --- confusion matrix, per class, confused pairs -----------------------------------------------------
pairs = confused_pairs(m)
view = st.session_state.get("evaluate_view")
if not view or view["run"] != run_id:
    first = pairs.iloc[0] if len(pairs) else None
    choose(
        run_id,
        first["true"] if first is not None else m.classes[0],
        first["pred"] if first is not None else m.classes[0],
    )
    view = st.session_state.evaluate_view
with st.container():
    a, b = st.columns(2)
    keep("evaluate_norm", next(iter(NORMALIZE)), options=list(NORMALIZE))
    keep("evaluate_order", ORDERS[0], options=ORDERS)
    norm = a.radio("Colour by", list(NORMALIZE), format_func=NORMALIZE.get, key="evaluate_norm")
    order_by = b.radio("Order classes by", ORDERS, key="evaluate_order")
    order = m.classes if order_by == ORDERS[0] else error_order(m.confusion, m.classes)
    framed = (view["true"], view["pred"]) if view["true"] and view["pred"] else None
    heatmap = confusion_heatmap(confusion_frame(m.confusion, m.classes, norm), order, normalize=norm, selected=framed)
    st.altair_chart(
        heatmap, width="stretch", key="evaluate_confusion", on_select=lambda: on_cell(run_id), selection_mode=CELL
    )
# The table, then the pairs, each the page's width: side by side they showed 4 columns and cut buttons at 800 px.
left, right = st.container(), st.container()
with left:
    st.subheader("Per class, worst first")
    worst = m.per_class.sort_values(["f1", "support"], ascending=[True, False]).reset_index(drop=True)
    st.dataframe(
        worst, hide_index=True, key="evaluate_classes", selection_mode="single-row",
        on_select=lambda: on_class(run_id, worst["class"].tolist()),
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1", "average_precision")}
        | {"average_precision": st.column_config.NumberColumn("AP", format="%.3f")},
    )  # fmt: skip
    st.caption("Click a column to sort; select a row to see that class's mistakes below.")
with right:
    st.subheader("Most confused pairs")
    if pairs.empty:
        st.caption("No mistakes on the validation split.")
    for i, pair in pairs.iterrows():
        st.button(
            plain(f"{pair['true']} → {pair['pred']}: {pair['count']} ({percent(pair['share'])} of {pair['true']})"),
            key=f"evaluate_pair_{i}", on_click=choose, args=(run_id, pair["true"], pair["pred"]), width="stretch",
        )  # fmt: skip


# --- the gallery ---------------------------------------------------------------------------------
def index_of(name: str | None) -> int | None:
    return m.classes.index(name) if name in m.classes else None


def same_dataset() -> bool:
    """Whether the run's images are the open source's, so the Channels page can show them."""
    root = st.session_state.get("dataset_root")
    return bool(root and record.root) and Path(root).resolve() == Path(record.root).resolve()


def open_in_channels(i: str, row) -> None:
    """A button that opens this image on the Channels page (its class and its number there)."""
    positions = cache.channels_positions(record.root, *_index_version())
    number = positions.get(row["path"])
    if number is not None and st.button(
        "Channels", key=f"evaluate_channels_{i}", icon=":material/palette:", width="stretch"
    ):
        st.session_state.channels_class, st.session_state.channels_image = row["true"], number
        st.switch_page("pages/channels.py", query_params={**source_to_params(st.session_state.source),
                                                          "class": row["true"], "image": str(number)})  # fmt: skip


def _index_version() -> tuple[int, bool]:
    index = cache.current_index(record.root)
    return index.num_images, index.verified


def gallery(rows, key: str, linked: bool) -> None:
    """Thumbnails with captions (path, true → predicted, confidence) and links to Channels and Explain."""
    # Fixed-width cells that wrap: six to a row at 1400 px, four at 800 px, captions and buttons whole.
    for cell, (n, (_, row)) in zip(tiles(len(rows), THUMB), enumerate(rows.iterrows()), strict=True):
        with cell:
            thumb = cache.thumbnail(str(Path(record.root) / row["path"]), THUMB_PX)
            # Two lines (a Markdown hard break between): the path, then true → predicted · confidence.
            caption = (
                plain(row["path"]) + "  \n" + plain(f"{row['true']} → {row['pred']} · {percent(row['confidence'])}")
            )
            if isinstance(thumb, str):
                st.caption(plain(f"{row['path']}: {thumb}"))
            else:
                st.image(thumb, caption=caption, width="stretch")
            if linked:
                open_in_channels(f"{key}_{n}", row)
            if EXPLAIN.exists():
                st.page_link("pages/explain.py", label="Explain", icon=":material/lightbulb:",
                             query_params={"run": run_id, "image": row["path"]})  # fmt: skip


linked = same_dataset()
with st.container(key="evaluate_gallery"):
    true_i, pred_i = index_of(view["true"]), index_of(view["pred"])
    shown = images_of(preds, true_i, pred_i, errors=view["errors"])
    count = f"{len(shown)} image{'' if len(shown) == 1 else 's'}, most confident first"
    if view["errors"]:
        st.subheader(f"Mistakes on {plain(view['true'])}: {count}")
    else:
        st.subheader(f"True {plain(view['true'])}, predicted {plain(view['pred'])}: {count}")
    if shown.empty:
        st.caption("No image in this cell.")
    else:
        pages = math.ceil(len(shown) / PER_PAGE)
        keep("evaluate_page", 1, valid=lambda v: isinstance(v, int) and 1 <= v <= pages)
        page = st.number_input(f"Page (of {pages})", 1, pages, key="evaluate_page")
        gallery(shown.iloc[(page - 1) * PER_PAGE : page * PER_PAGE], "cell", linked)
    if not linked:
        st.caption("Open this run's dataset in the sidebar to jump from an image to the Channels page.")

with st.container(key="evaluate_top_losses"):
    st.subheader("Top losses: the most confidently wrong")
    worst_images = top_losses(preds, PER_PAGE)
    if worst_images.empty:
        st.caption("No mistakes on the validation split.")
    else:
        gallery(worst_images, "loss", linked)

# --- curves --------------------------------------------------------------------------------------
st.subheader("Precision-recall and calibration")
left, right = tiles(2, HALF)  # side by side at 1400 px, one above the other at 800 px
with left:
    by_ap = m.per_class.sort_values("average_precision")["class"].tolist()
    keep("evaluate_pr_classes", by_ap[: min(5, len(by_ap))], valid=lambda v: set(v) <= set(m.classes))
    chosen = st.multiselect("Classes (lowest average precision first)", by_ap, key="evaluate_pr_classes")
    if chosen:
        st.altair_chart(pr_chart(cache.pr_curves(run_id, key, tuple(chosen), evaluation)), width="stretch")
    if not preds.complete:
        st.caption(
            "Above 20 classes only each image's top 10 probabilities are stored: a score outside them counts as 0."
        )
with right:
    st.altair_chart(reliability_chart(m.reliability, m.ece), width="stretch")

"""Explain: where a run's model looks in one image, what its conv blocks see, and the whole split as a map.

Widget keys (stable, for tests and URLs):
    explain_run                          the run (runs with a checkpoint)
    explain_class, explain_index         the image: a class of the validation split and its number in it
    explain_upload                       or an uploaded image
    explain_method                       gradcam, ig, saliency, occlusion (those that apply to the model)
    explain_target                       the class to explain: -1 = the predicted one, else a class index
    explain_opacity                      the overlay's opacity, 0 to 1
    explain_layer                        the conv block whose feature maps are shown
    explain_points                       how many validation images the embedding map shows
    explain_map, explain_pixel_map       the two embedding charts (clicking a point picks its image)
Every widget above but the uploader and the maps keeps its value across page switches (lib.app.state.keep).
Query parameters: run=<run id>, image=<path relative to the dataset root> (as the Evaluate page links).
Containers: explain_overlay, explain_embedding, explain_picked (the clicked point's image explained under the
maps) (CSS .st-key-<name>). The attribution map's colour scale is signed (blue against, red for the class, 0 in the
middle) for the methods in lib.evaluation.features.SIGNED_METHODS, else from 0 (dark) up.
"""

from __future__ import annotations

import hashlib
import uuid

import pandas as pd
import streamlit as st

from lib.app import cache, repairs
from lib.app.imported import dataset_picked
from lib.app.layout import HALF, tiles
from lib.app.numbers import percent
from lib.app.state import keep
from lib.app.text import plain, plain_error
from lib.charts.explain import PICK, embedding_chart, probability_chart
from lib.charts.scales import colour_bar
from lib.evaluation.attributions import METHOD_NAMES
from lib.evaluation.features import SIGNED_METHODS, map_scale, overlay
from lib.runs.view import run_labels
from lib.settings import runs_dir

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

MAP_KEYS = ("explain_map", "explain_pixel_map")
SOURCES = ("the validation split", "an upload")
PANEL_PX = 224

st.title("Explain")
settings = cache.settings()
store = cache.run_store(str(runs_dir()))
if "session_id" not in st.session_state:
    st.session_state.session_id = uuid.uuid4().hex
owner = st.session_state.session_id if settings.deployed else None  # a visitor sees only their runs
runs = [r for r in store.list_runs(owner) if store.files.checkpoint_path(r.id, "last").exists()]
if not runs:
    st.info("No run has a checkpoint yet: train one on the Train page, then come back.")
    st.stop()
labels = run_labels(runs)


def load_facts(run_id: str):
    try:
        return cache.explain_facts(run_id)
    except ValueError as e:
        st.error(plain_error(e))
        st.stop()


def pick_image(path: str, facts) -> bool:
    """Point the class and number pickers at `path` of the run's validation split; False when it is not there."""
    if path not in facts.val_paths:
        return False
    target = facts.val_targets[facts.val_paths.index(path)]
    same_class = [p for p, t in zip(facts.val_paths, facts.val_targets) if t == target]
    st.session_state.explain_class = facts.classes[target]
    st.session_state.explain_index = same_class.index(path)
    st.session_state.explain_source = SOURCES[0]
    return True


def apply_link_and_clicks() -> None:
    """A link's run= and image= (once per link), then a click on either embedding map (once per click)."""
    link = (st.query_params.get("run"), st.query_params.get("image"))
    new_link = link != st.session_state.get("_explain_link")
    if new_link:
        st.session_state._explain_link = link
        if link[0] in labels:
            st.session_state.explain_run = link[0]
        elif link[0]:
            st.warning(f"Run {plain(link[0])} is not in the store; showing another run.")
    keep("explain_run", runs[0].id, options=list(labels))  # the link's run, else the one kept, else the newest
    if new_link and link[1] and not pick_image(link[1], load_facts(st.session_state.explain_run)):
        st.warning(f"{plain(link[1])} is not in this run's validation split; pick an image below.")
    for key in MAP_KEYS:
        chosen = (st.session_state.get(key) or {}).get("selection", {}).get(PICK) or []
        path = chosen[0].get("path") if chosen else None
        if path and path != st.session_state.get(f"_{key}_done"):
            st.session_state[f"_{key}_done"] = path
            if pick_image(path, load_facts(st.session_state.explain_run)):
                st.session_state._explain_picked = path  # explained again under the maps, where the user is


apply_link_and_clicks()
left, middle, right = st.columns([2, 1, 1])
run_id = left.selectbox("Run", list(labels), format_func=labels.get, key="explain_run")
if not dataset_picked(next(r for r in runs if r.id == run_id), store):  # an imported run: a dataset its owner opened
    st.stop()
facts = load_facts(run_id)
keep("explain_class", facts.classes[0], options=facts.classes)
class_name = middle.selectbox("Class", facts.classes, key="explain_class")
in_class = [p for p, t in zip(facts.val_paths, facts.val_targets) if facts.classes[t] == class_name]
if not in_class:
    st.info(f"The validation split has no image of {plain(class_name)}; pick another class.")
    st.stop()
keep("explain_index", 0, valid=lambda v: isinstance(v, int) and 0 <= v < len(in_class))  # fewer images: the first
keep("explain_source", SOURCES[0], options=SOURCES)
number = right.number_input(f"Image (0 to {len(in_class) - 1})", 0, len(in_class) - 1, key="explain_index")
source = st.radio("Image from", SOURCES, horizontal=True, key="explain_source", label_visibility="collapsed")


def chosen_image() -> tuple[str, object, str, str | None]:
    """(cache id, uint8 (S, S, 3), caption, validation path or None) of the image to explain; stops with a sentence."""
    if source == SOURCES[1]:
        limit = settings.max_upload_mb
        up = st.file_uploader(f"An image (up to {limit} MB)", key="explain_upload", max_upload_size=limit)
        if up is None:
            st.info("Upload an image to see what the model makes of it.")
            st.stop()
        if up.size > limit * 2**20:
            st.error(
                f"{plain(up.name)} is {up.size / 2**20:.0f} MB, over this app's {limit} MB limit; upload a smaller image."
            )
            st.stop()
        data = up.getvalue()
        try:
            return "upload:" + hashlib.sha1(data).hexdigest(), cache.upload_image(data, run_id), up.name, None
        except ValueError as e:
            st.error(plain_error(e))
            st.stop()
    path = in_class[number]
    img = cache.run_image(run_id, path, facts.image_size)
    if isinstance(img, str):
        st.error(plain(img))
        st.stop()
    # The URL names what is shown, so it can be shared; remembered as applied so it does not re-apply.
    st.query_params["run"], st.query_params["image"] = run_id, path
    st.session_state._explain_link = (run_id, path)
    return "val:" + path, img, path, path


def enlarged(picture):
    """A small picture repeated to about PANEL_PX a side, so the browser shows pixels, not a blur."""
    factor = max(1, PANEL_PX // picture.shape[0])
    return picture.repeat(factor, 0).repeat(factor, 1)


image_id, image, caption, val_path = chosen_image()
try:
    key = cache.checkpoint_key(run_id)
except ValueError as e:
    st.error(plain_error(e))
    st.stop()

keep("explain_method", facts.methods[0], options=facts.methods)
a, b, c = st.columns([2, 1, 1])
method = a.radio("Method", facts.methods, format_func=METHOD_NAMES.get, horizontal=True, key="explain_method")
targets = [-1, *range(len(facts.classes))]
keep("explain_target", -1, options=targets)
keep("explain_opacity", 0.5, valid=lambda v: isinstance(v, float) and 0.0 <= v <= 1.0)
target = b.selectbox(
    "Explain the class",
    targets,
    format_func=lambda i: "the predicted one" if i < 0 else facts.classes[i],
    key="explain_target",
)
opacity = c.slider("Overlay opacity", 0.0, 1.0, step=0.05, key="explain_opacity")
if facts.gradcam_reason:
    st.caption(facts.gradcam_reason)
with st.spinner(f"Computing {METHOD_NAMES[method]}…"):
    result = cache.explanation(run_id, key, image_id, image, method, None if target < 0 else target)
top = pd.DataFrame(
    [{"class": facts.classes[i], "p": p, "is target": i == result.target} for i, p in result.prediction.top(5)]
)


signed = method in SIGNED_METHODS
scale_domain, scale_colours = map_scale(result.heatmap, signed)
SCALE_WORDS = (
    "Colour: blue is evidence against the class, red evidence for it, white none (0 in the middle; the ends are "
    "the map's largest absolute value)."
    if signed
    else "Colour: none (dark, 0) to the map's strongest evidence for the class (bright); this method has no sign."
)


def draw_explanation(key: str) -> None:
    """The image, its attribution map and its top-5 probabilities, side by side, in container `key`."""
    name = key.removesuffix("_overlay")
    with st.container(key=key):
        left, middle, right = st.columns(3)
        left.image(enlarged(image), caption=plain(caption), width="stretch")
        middle.image(
            enlarged(overlay(image, result.heatmap, opacity, signed=signed)),
            caption=f"{METHOD_NAMES[method]} for {plain(facts.classes[result.target])}",
            width="stretch",
        )
        bar = colour_bar(scale_domain, scale_colours, title="Colour scale")
        middle.altair_chart(bar, width="stretch", key=f"{name}_scale")
        middle.caption(SCALE_WORDS)
        right.markdown(f"**Predicted {plain(facts.classes[result.prediction.predicted])}**; top {len(top)}:")
        right.altair_chart(probability_chart(top), width="stretch", key=f"{name}_probabilities")


draw_explanation("explain_overlay")  # .st-key-explain_overlay: the browser test's anchor

st.subheader("Feature maps")
if not facts.blocks:
    st.caption(f"A {facts.model} model has no convolutional layer, so it has no feature maps.")
else:
    keep("explain_layer", len(facts.blocks) - 1, options=range(len(facts.blocks)))
    layer = st.selectbox(
        "Block",
        range(len(facts.blocks)),
        format_func=facts.blocks.__getitem__,
        key="explain_layer",
        help="Block n is the model's n-th convolutional block from the input; in brackets, the layer whose output "
        "is shown (a torchvision ResNet's stem or layer1..4, else its module's index in the model: `python -m lib "
        "inspect` and print(model) use the same names).",
    )
    pictures, filters = cache.feature_pictures(run_id, key, image_id, image)
    st.image(
        pictures[layer], caption="Each tile one channel's activation; one scale for the block, brighter = stronger"
    )
    if filters is not None:
        st.image(filters, caption="The first layer's filters as RGB (each scaled from its own minimum to maximum)")

st.subheader("Embedding map")
st.caption(
    "Each point a validation image: where the features at the model's head's input put it (first map) and where "
    "its raw pixels do (second), both by PCA. Colour is the true class, a cross a mistake; hover for the image, click to "
    "explain it. The percentage in each title is the share of the variance its two components keep."
)
keep("explain_points", 300, valid=lambda v: isinstance(v, int) and 50 <= v <= 2000)
points = st.number_input("Images on the map", 50, 2000, step=50, key="explain_points")
found = cache.stored_embedding(run_id, int(points))
if found is None:
    bar = st.progress(0.0, text="Embedding the validation images…")
    try:
        found = cache.embedding(run_id, int(points), lambda d, t: bar.progress(d / t, text=f"{d:,} / {t:,} steps"))
    except ValueError as e:
        st.error(plain_error(e))
        st.stop()
    bar.empty()
frame, model_share, pixel_share, skipped = found
with st.container(key="explain_embedding"):  # .st-key-explain_embedding
    for column, (prefix, what, share), key_ in zip(
        tiles(2, HALF),  # side by side at 1400 px; at 800 px one above the other, each readable
        [("model", "Model features", model_share), ("pixel", "Raw pixels", pixel_share)],
        MAP_KEYS,
        strict=True,
    ):
        chart = embedding_chart(
            frame, f"{prefix}_x", f"{prefix}_y", title=f"{what}: {percent(sum(share))}", current=val_path
        )
        column.altair_chart(chart, on_select="rerun", selection_mode=PICK, key=key_, width="stretch")
if val_path and val_path == st.session_state.get("_explain_picked"):
    # The page stays at the map after a click: the clicked image's explanation is here too, not only at the top.
    st.markdown(f"**The image you clicked, {plain(val_path)}** (also at the top of the page):")
    draw_explanation("explain_picked")
mistakes = int((frame["outcome"] == "mistake").sum())
st.caption(f"{len(frame):,} images, {mistakes:,} mistakes" + (f"; {len(skipped)} could not be read" if skipped else ""))

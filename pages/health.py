"""Health: duplicates, likely wrong labels and outliers of the open dataset; mark files to leave out.

Widget keys (stable, for tests and URLs):
    health_model, health_folds  the label check's quick model (auto, probe, cnn, linear, knn) and its folds (2-20)
    health_start              the button that starts the check (it starts by itself up to AUTO_CHECK_MAX images)
    health_threshold          near duplicates: at most this many bits apart (0-16)
    health_more_<s>           show SHOWN more of a gallery (s: dup, label, outlier)
    health_csv                the CSV download of every finding
    health_mark_<s>_<id>      leave this file out (s: dup, label, outlier; id: a hash of its path)
    health_channels_<s>_<id>  open this file on the Channels page (Explain: a link, where a run validated it)
    health_unmark_all         unmark every file
Containers (CSS .st-key-<name>): health_counts, health_duplicates, health_labels, health_outliers.
Model, folds and threshold keep their values across page switches (lib.app.state.keep); how many of each
gallery are shown lives under health_shown_<s>:<root>.
Session state read: dataset_root, source, session_id. Written: channels_class, channels_image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from lib.app import cache, repairs, sessions
from lib.app import health as app_health
from lib.app.layout import THUMB, tiles
from lib.app.state import keep
from lib.app.text import plain, plain_error
from lib.data.sources import source_to_params
from lib.health import MAX_THRESHOLD, MODELS, NEAR_THRESHOLD
from lib.health.findings import HealthConfig
from lib.settings import load_settings

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

AUTO_CHECK_MAX = 2_000
SHOWN = 24  # findings drawn per section at first; each "Show more" adds as many (the CSV has them all)
MODEL_NAMES = {
    "auto": "auto (probe, else cnn)",
    "probe": "probe (pretrained backbone)",
    "cnn": "cnn (trained per fold)",
    "linear": "linear (on the pixels)",
    "knn": "knn (on the pixels)",
}
THUMB_PX = 96

st.title("Health")
root = st.session_state.get("dataset_root")
if not root:
    st.info("Choose a data source in the sidebar.")
    st.stop()
try:
    full = cache.current_index(root, marked=True)  # marked files too: they can be unmarked here
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
if full.num_images == 0:
    st.info("This dataset has no usable images; see the Dataset page's bad-file report.")
    st.stop()
with st.container(horizontal=True, key="health_options"):
    keep("health_model", "auto", options=MODELS)
    keep("health_folds", 5, valid=lambda v: isinstance(v, int) and 2 <= v <= 20)
    st.selectbox(
        "Label check's model", MODELS, format_func=MODEL_NAMES.get, key="health_model", width=260,
        help="auto: a linear probe on a pretrained backbone whose weights are in torch hub's cache, else the small "
        "cnn. Fitted on all folds but one, it scores the held-out fold; its features also score the outliers.",
    )  # fmt: skip
    st.number_input("Folds", 2, 20, key="health_folds", width=120)
config = HealthConfig(st.session_state.health_folds, st.session_state.health_model)
try:
    config_key = config.key()  # raises for the probe without a backbone's weights at hand
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
findings = app_health.stored(full, config)
try:
    job = None if findings else app_health.findings_job(full, config, start=full.num_images <= AUTO_CHECK_MAX)
except ValueError as e:  # deployed: this tab's checks are at their cap
    st.info(plain_error(e))
    st.stop()
if findings is None and job is None:
    st.info(
        f"The check decodes each of the {full.num_images:,} images once, then fits a quick model "
        f"{config.folds} times to score every label."
    )
    if st.button("Check the dataset's health", key="health_start"):
        try:
            job = app_health.findings_job(full, config, start=True)
        except ValueError as e:
            st.error(plain_error(e))


@st.fragment(run_every=1.0 if job is not None and not job.done else None)
def check_progress() -> None:
    """The background check's progress; reruns the page when it ends."""
    if job is None:
        return
    sessions.touch(st.session_state.session_id)  # a tab watching the check is not idle
    if not job.done and app_health.waiting(full, config):
        st.progress(0.0, text=f"Health check: waiting for a free place ({app_health.CHECKS_AT_ONCE} run at once)…")
    elif not job.done:
        half = "decoding every image once" if job.done_count <= job.total // 2 else "scoring the labels"
        st.progress(job.fraction, text=f"Health check: {half}…")
    elif job.error:
        st.error(f"The health check stopped: {plain(job.error)}")
    elif not st.session_state.get(f"health_shown:{root}:{config_key}"):
        st.session_state[f"health_shown:{root}:{config_key}"] = True
        st.rerun(scope="app")


check_progress()
if findings is None:
    st.stop()
st.session_state[f"health_shown:{root}:{config_key}"] = True

marked = set(app_health.marks(root))
keep("health_threshold", NEAR_THRESHOLD, cast=int, valid=lambda v: isinstance(v, int) and 0 <= v <= MAX_THRESHOLD)
threshold = st.slider(
    "Near-duplicate threshold (bits of 64 that may differ)",
    0,
    MAX_THRESHOLD,
    key="health_threshold",
    help="Perceptual hashes at most this far apart are near copies: 0 finds only the same hash, 16 finds loose look-alikes.",
)
groups = findings.regroup(threshold)
conflicts = [g for g in groups if g["conflict"]]

with st.container(horizontal=True, gap="large", key="health_counts"):
    st.metric("Images", f"{len(findings.paths):,}", width="content")
    st.metric("Duplicate groups", len(groups), help="Exact and near copies.", width="content")
    st.metric("Label conflicts", len(conflicts), help="Copies filed under different classes.", width="content")
    st.metric("Likely wrong labels", len(findings.label_issues), width="content")
    st.metric("Outliers", len(findings.outliers), width="content")
    st.metric("Marked", len(marked), help="Files left out of training, statistics and evaluation.", width="content")
st.caption(plain(f"Label check: {findings.model_detail}, {config.folds} folds."))
for note in findings.notes:
    st.info(plain(note))


def csv_rows() -> pd.DataFrame:
    """Every finding as one row: kind, path, class, detail, score."""
    rows = []
    for n, g in enumerate(groups):
        kind = f"{g['kind']} duplicate" + (" (label conflict)" if g["conflict"] else "")
        rows += [
            {"finding": kind, "group": n, "path": p, "detail": c, "score": None}
            for p, c in zip(g["paths"], g["classes"])
        ]
    for i in findings.label_issues:
        rows.append({"finding": "label", "group": None, "path": i["path"],
                     "detail": f"labeled {i['given']}, looks like {i['suggested']}", "score": i["score"]})  # fmt: skip
    rows += [{"finding": "outlier", "group": None, "path": o["path"], "detail": o["reason"], "score": o["score"]}
             for o in findings.outliers]  # fmt: skip
    return pd.DataFrame(rows, columns=["finding", "group", "path", "detail", "score"])


st.download_button(
    "Download the findings (CSV)",
    csv_rows().to_csv(index=False).encode(),
    file_name="health.csv",
    mime="text/csv",
    key="health_csv",
    on_click="ignore",
)
# Each image's number on the Channels page, which counts only the files not marked.
positions = cache.channels_positions(root, full.num_images - len(marked & set(findings.paths)), full.verified)
deployed = load_settings().deployed
explained = app_health.explain_runs(root, st.session_state.session_id if deployed else None)
if not explained:
    st.caption("Explain shows a run's validation images: no run with a checkpoint has trained on this dataset yet, "
               "so no finding opens there; train one on the Train page.")  # fmt: skip


def _id(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:12]


def _toggle(path: str, key: str) -> None:
    app_health.set_marked(root, [path], bool(st.session_state[key]))


def controls(section: str, path: str, class_name: str) -> None:
    """Leave-out checkbox (its state follows the marks file), the button to Channels and the link to Explain."""
    key = f"health_mark_{section}_{_id(path)}"
    st.session_state[key] = path in marked
    st.checkbox("Leave out", key=key, on_change=_toggle, args=(path, key))
    if path in explained:
        st.page_link("pages/explain.py", label="Explain", icon=":material/lightbulb:",
                     query_params={"run": explained[path], "image": path})  # fmt: skip
    number = positions.get(path)
    if number is not None and st.button(
        "Channels", key=f"health_channels_{section}_{_id(path)}", icon=":material/palette:"
    ):
        st.session_state.channels_class, st.session_state.channels_image = class_name, number
        st.switch_page("pages/channels.py", query_params={**source_to_params(st.session_state.source),
                                                          "class": class_name, "image": str(number)})  # fmt: skip


def shown(section: str, total: int) -> int:
    """How many of a gallery's `total` findings to draw: SHOWN, plus SHOWN for each "Show more"."""
    key = f"health_shown_{section}:{root}"
    return min(total, st.session_state.get(key, SHOWN))


def show_more(section: str, total: int) -> None:
    """A button under a gallery that draws SHOWN more, while some are not drawn."""
    key, count = f"health_shown_{section}:{root}", shown(section, total)
    if count < total and st.button(
        f"Show more ({count:,} of {total:,} shown)", key=f"health_more_{section}", icon=":material/expand_more:"
    ):
        st.session_state[key] = count + SHOWN
        st.rerun()


def picture(path: str, caption: str) -> None:
    thumb = cache.thumbnail(str(Path(findings.root) / path), THUMB_PX)
    if isinstance(thumb, str):
        st.caption(plain(f"{path}: {thumb}"))
    else:
        st.image(thumb, caption=plain(caption), width=THUMB_PX)


with st.container(key="health_duplicates"):
    st.subheader(f"Duplicates: {len(groups)} groups")
    st.caption(
        "Exact: the same decoded pixels. Near: perceptual hashes at most "
        f"{threshold} bits apart. A group across classes is a label conflict."
    )
    for g in groups[: shown("dup", len(groups))]:
        tag = " · label conflict" if g["conflict"] else ""
        st.markdown(f"**{g['kind'].capitalize()} copies{tag}** ({len(g['paths'])} images)")
        cols = st.columns(min(len(g["paths"]), 4) + 1)
        for col, path, name in zip(cols, g["paths"][:4], g["classes"][:4]):
            with col:
                picture(path, f"{path} · {name}")
                controls("dup", path, name)
        diff = app_health.difference(*(str(Path(findings.root) / p) for p in g["paths"][:2]))
        with cols[-1]:
            if isinstance(diff, str):
                st.caption(plain(diff))
            else:
                st.image(diff[0], caption=f"Difference of the first two (largest: {diff[1]} of 255)", width=THUMB_PX)
    show_more("dup", len(groups))

with st.container(key="health_labels"):
    st.subheader(f"Likely wrong labels: {len(findings.label_issues)}")
    st.caption(
        plain(f"Out-of-sample probabilities from {config.folds}-fold cross-validation of {findings.model_detail}, ")
        + "then confident learning; most likely wrong first. Score: 1 - the probability of the given label."
    )
    issues = findings.label_issues[: shown("label", len(findings.label_issues))]
    for cell, issue in zip(tiles(len(issues), THUMB), issues, strict=True):
        with cell:
            picture(
                issue["path"],
                f"{issue['path']}: labeled {issue['given']}, looks like {issue['suggested']} ({issue['score']:.2f})",
            )
            controls("label", issue["path"], issue["given"])
    show_more("label", len(findings.label_issues))

with st.container(key="health_outliers"):
    st.subheader(f"Outliers: {len(findings.outliers)}")
    st.caption("Far from its class in the label check's features (robust z-score), or plain: near-constant, "
               "extremely dark or bright, tiny, or an extreme aspect ratio.")  # fmt: skip
    class_of = dict(zip(findings.paths, findings.targets))
    found = findings.outliers[: shown("outlier", len(findings.outliers))]
    for cell, o in zip(tiles(len(found), THUMB), found, strict=True):
        with cell:
            picture(o["path"], f"{o['path']}: {o['reason']}")
            controls("outlier", o["path"], findings.classes[class_of[o["path"]]])
    show_more("outlier", len(findings.outliers))

if marked:
    with st.expander(f"{len(marked)} files marked to leave out"):
        st.dataframe({"path": sorted(marked)}, width="stretch")
        if st.button("Unmark all", key="health_unmark_all"):
            app_health.set_marked(root, sorted(marked), False)
            st.rerun()

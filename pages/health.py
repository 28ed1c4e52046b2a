"""Health: duplicates, likely wrong labels and outliers of the open dataset; mark files to leave out.

Widget keys (stable, for tests and URLs):
    health_start              the button that starts the check (it starts by itself up to AUTO_CHECK_MAX images)
    health_threshold          near duplicates: at most this many bits apart (0-16)
    health_csv                the CSV download of every finding
    health_mark_<s>_<id>      leave this file out (s: dup, label, outlier; id: a hash of its path)
    health_channels_<s>_<id>  open this file on the Channels page
    health_unmark_all         unmark every file
Containers (CSS .st-key-<name>): health_counts, health_duplicates, health_labels, health_outliers.
Session state read: dataset_root, source, session_id. Written: channels_class, channels_image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from lib.app import cache, repairs, sessions
from lib.app import health as app_health
from lib.app.state import keep
from lib.app.text import plain, plain_error
from lib.data.sources import source_to_params
from lib.health import MAX_THRESHOLD, NEAR_THRESHOLD
from lib.health.findings import HealthConfig

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

AUTO_CHECK_MAX = 2_000
SHOWN = 24  # findings drawn per section (the CSV has them all)
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
config = HealthConfig()
findings = app_health.stored(full, config)
job = None if findings else app_health.findings_job(full, config, start=full.num_images <= AUTO_CHECK_MAX)
if findings is None and job is None:
    st.info(
        f"The check decodes each of the {full.num_images:,} images once, then fits a quick model "
        f"{config.folds} times to score every label."
    )
    if st.button("Check the dataset's health", key="health_start"):
        job = app_health.findings_job(full, config, start=True)


@st.fragment(run_every=1.0 if job is not None and not job.done else None)
def check_progress() -> None:
    """The background check's progress; reruns the page when it ends."""
    if job is None:
        return
    sessions.touch(st.session_state.session_id)  # a tab watching the check is not idle
    if not job.done:
        half = "decoding every image once" if job.done_count <= job.total // 2 else "scoring the labels"
        st.progress(job.fraction, text=f"Health check: {half}…")
    elif job.error:
        st.error(f"The health check stopped: {plain(job.error)}")
    elif not st.session_state.get(f"health_shown:{root}"):
        st.session_state[f"health_shown:{root}"] = True
        st.rerun(scope="app")


check_progress()
if findings is None:
    st.stop()
st.session_state[f"health_shown:{root}"] = True

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


def _id(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:12]


def _toggle(path: str, key: str) -> None:
    app_health.set_marked(root, [path], bool(st.session_state[key]))


def controls(section: str, path: str, class_name: str) -> None:
    """Leave-out checkbox (its state follows the marks file) and the link to Channels."""
    key = f"health_mark_{section}_{_id(path)}"
    st.session_state[key] = path in marked
    st.checkbox("Leave out", key=key, on_change=_toggle, args=(path, key))
    number = positions.get(path)
    if number is not None and st.button(
        "Channels", key=f"health_channels_{section}_{_id(path)}", icon=":material/palette:"
    ):
        st.session_state.channels_class, st.session_state.channels_image = class_name, number
        st.switch_page("pages/channels.py", query_params={**source_to_params(st.session_state.source),
                                                          "class": class_name, "image": str(number)})  # fmt: skip


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
    for g in groups[:SHOWN]:
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

with st.container(key="health_labels"):
    st.subheader(f"Likely wrong labels: {len(findings.label_issues)}")
    st.caption(
        f"Out-of-sample probabilities from {config.folds}-fold cross-validation of a {config.model} model, then "
        "confident learning; most likely wrong first. Score: 1 - the probability of the given label."
    )
    cols = st.columns(6)
    for n, issue in enumerate(findings.label_issues[:SHOWN]):
        with cols[n % 6]:
            picture(
                issue["path"],
                f"{issue['path']}: labeled {issue['given']}, looks like {issue['suggested']} ({issue['score']:.2f})",
            )
            controls("label", issue["path"], issue["given"])

with st.container(key="health_outliers"):
    st.subheader(f"Outliers: {len(findings.outliers)}")
    cols = st.columns(6)
    for n, o in enumerate(findings.outliers[:SHOWN]):
        with cols[n % 6]:
            picture(o["path"], f"{o['path']}: {o['reason']}")
            controls("outlier", o["path"], findings.classes[findings.targets[findings.paths.index(o["path"])]])

if marked:
    with st.expander(f"{len(marked)} files marked to leave out"):
        st.dataframe({"path": sorted(marked)}, width="stretch")
        if st.button("Unmark all", key="health_unmark_all"):
            app_health.set_marked(root, sorted(marked), False)
            st.rerun()

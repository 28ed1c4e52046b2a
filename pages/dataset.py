"""Dataset: totals, class balance (click a bar to filter the grid), image grid, distributions, bad files."""

import math

import streamlit as st

from lib.app import cache, sessions
from lib.app.text import plain, plain_error
from lib.charts import dataset as charts
from lib.data import explore

# Widget keys.
KEY_CLASS_CHART, KEY_GRID_CLASS, KEY_SEED, KEY_PAGE, KEY_RESCAN = (
    "class_chart",
    "grid_class",
    "grid_seed",
    "grid_page",
    "rescan",
)
KEY_CHECK = "full_check"
PER_PAGE = 24
AUTO_CHECK_MAX = 2_000  # the full check starts by itself up to this many images, on a button above
ALL = "All classes"

root = st.session_state.get("dataset_root")
if not root:
    st.info("Choose a data source in the sidebar.")
    st.stop()

try:
    index = cache.current_index(root)
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
job = cache.verify_job(root, start=index.num_images <= AUTO_CHECK_MAX)

st.title("Dataset")
# A deployment names the source, never the server folder it was unpacked into.
source = st.session_state.get("source")
st.caption(plain(source.label() if cache.settings().deployed and source is not None else index.root))
if job is None:
    st.info(
        f"{index.num_images:,} images were indexed from their headers. The full check decodes every image once "
        "and finds files whose data is broken (a truncated JPEG passes a header check)."
    )
    if st.button("Run the full check", key=KEY_CHECK):
        job = cache.verify_job(root, start=True)
if job is not None and job.done:
    st.session_state[f"checked:{root}"] = True  # this run already shows the checked index


@st.fragment(run_every=1.0 if job is not None and not job.done else None)
def check_progress() -> None:
    """Progress of the background full check; reruns the page once when it finishes."""
    if job is None:
        return
    sessions.touch(st.session_state.session_id)  # a tab watching the check is not idle
    if not job.done:
        st.progress(job.fraction, text=f"Full check: decoding every image once ({job.done_count:,}/{job.total:,})…")
    elif not st.session_state.get(f"checked:{root}"):
        st.session_state[f"checked:{root}"] = True
        st.rerun(scope="app")
    elif job.error:
        st.warning(f"The full check stopped: {plain(job.error)}. The header check's results are shown.")


check_progress()

cols = st.columns(5)
cols[0].metric("Images", f"{index.num_images:,}")
cols[1].metric("Classes", len(index.classes))
cols[2].metric("Bad files", len(index.bad_files), help="Files that look like images but cannot be used.")
cols[3].metric("Skipped", len(index.skipped_files), help="Files that are not images (by extension).")
cols[4].metric("Empty classes", len(index.empty_classes))
if index.empty_classes:
    st.warning("Empty class folders: " + plain(", ".join(index.empty_classes)))
if index.unreadable_folders:
    st.warning(
        "Folders that cannot be read (check their permissions, then Rescan): "
        + plain(", ".join(index.unreadable_folders))
    )
if index.special_files:
    st.info(
        f"{len(index.special_files)} special files (pipes, devices, sockets) were skipped without being opened: "
        + plain(", ".join(index.special_files[:20]))
    )
if index.num_images == 0:
    st.error("This dataset has no usable images; check the bad-file report below and open another source.")

counts = explore.class_counts_frame(index)
event = st.altair_chart(charts.class_balance_chart(counts), on_select="rerun", key=KEY_CLASS_CHART, width="stretch")
picked = [p["class"] for p in (event.selection.get(charts.CLASS_PICK) or []) if "class" in p] if event else []

st.subheader("Images")
options = [ALL, *index.classes]
# A click on a bar picks that class for the grid; the selectbox stays free to change afterwards.
if picked and picked[0] in index.classes and picked != st.session_state.get("_last_pick"):
    st.session_state[KEY_GRID_CLASS] = picked[0]
st.session_state["_last_pick"] = picked
left, mid, right = st.columns([2, 1, 1])
chosen = left.selectbox("Class", options, key=KEY_GRID_CLASS)
seed = mid.number_input("Sample seed", min_value=0, value=0, step=1, key=KEY_SEED)
class_name = None if chosen == ALL else chosen
pool = index.num_images if class_name is None else counts.set_index("class").loc[class_name, "images"]
pages = max(1, math.ceil(pool / PER_PAGE))
page = right.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key=KEY_PAGE)

batch = explore.grid_sample(index, class_name, seed=int(seed), page=int(page) - 1, per_page=PER_PAGE)
grid = st.columns(8)
for i, (path, target) in enumerate(batch):
    thumb = cache.thumbnail(path)
    cell = grid[i % 8]
    if isinstance(thumb, str):
        cell.warning(plain(f"{index.relpath(path)}: {thumb}"))
    else:
        cell.image(thumb, caption=plain(f"{index.classes[target]} · {path.rsplit('/', 1)[-1]}"), width="stretch")

st.subheader("Sizes, shapes and modes")
headers = cache.header_frame(root, index.verified)
c1, c2, c3 = st.columns(3)
c1.altair_chart(charts.size_chart(explore.size_counts(headers)), width="stretch")
c2.altair_chart(charts.aspect_chart(explore.aspect_bins(headers)), width="stretch")
c3.altair_chart(charts.mode_chart(explore.mode_counts(headers)), width="stretch")

st.subheader("Bad files")
if index.bad_files:
    st.dataframe(explore.bad_files_frame(index), hide_index=True, width="stretch")
else:
    st.success("No bad files found" + ("." if index.verified else " in the headers (the full check has not finished)."))
if index.skipped_files:
    with st.expander(f"{len(index.skipped_files)} files skipped (not images)"):
        st.dataframe({"path": index.skipped_files[:1000]}, width="stretch")
if st.button("Rescan folder", key=KEY_RESCAN, help="Read the folder again after changing its files."):
    cache.forget_dataset(root)
    st.session_state.pop(f"checked:{root}", None)
    st.rerun()

"""Dataset: totals, class balance (click a bar to filter the grid), image grid, distributions, bad files."""

import math

import streamlit as st

from lib.app import cache, repairs, sessions
from lib.app.layout import THIRD, tiles
from lib.app.state import keep, set_value
from lib.app.text import plain, plain_error
from lib.charts import dataset as charts
from lib.data import explore
from lib.data.explore import short_name

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

# Widget keys.
KEY_CLASS_CHART, KEY_GRID_CLASS, KEY_SEED, KEY_PAGE, KEY_RESCAN = (
    "class_chart",
    "grid_class",
    "grid_seed",
    "grid_page",
    "rescan",
)
KEY_CHECK = "full_check"
KEY_CHART_N = "class_chart_n"  # bumped to clear the bar selection
PER_PAGE = 24
GRID_PX = 72  # a grid cell: eight to a row in a 704 px page
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
if job is not None and job.done and (index.verified or job.error):
    # This run shows the check's outcome. A check that ended after `index` was read (a small folder's
    # can end within this run) is not shown yet: check_progress below sees it and reruns the page.
    st.session_state[f"checked:{root}"] = True


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

with st.container(horizontal=True, gap="large"):  # wraps in a narrow window: five columns clipped their labels
    st.metric("Images", f"{index.num_images:,}", width="content")
    st.metric("Classes", len(index.classes), width="content")
    st.metric(
        "Bad files", len(index.bad_files), help="Files that look like images but cannot be used.", width="content"
    )
    st.metric("Skipped", len(index.skipped_files), help="Files that are not images (by extension).", width="content")
    st.metric("Empty classes", len(index.empty_classes), width="content")
    st.metric("Marked", len(index.left_out), help="Files marked on the Health page to leave out.", width="content")
if index.empty_classes:
    st.warning("Empty class folders: " + plain(", ".join(index.empty_classes)))
if index.unreadable_folders:
    st.warning(
        "Folders that cannot be read (check their permissions, then Rescan): "
        + plain(", ".join(index.unreadable_folders))
    )
if index.special_files:
    st.info(
        f"{len(index.special_files)} special file{'s' if len(index.special_files) > 1 else ''} "
        "(pipes, devices, sockets) skipped without being opened: " + plain(", ".join(index.special_files[:20]))
    )
if index.left_out:
    st.info(
        f"{len(index.left_out)} file{'s' if len(index.left_out) > 1 else ''} marked on the Health page "
        "to leave out: not counted here, and skipped by training, statistics and evaluation."
    )
if index.num_images == 0:
    st.error("This dataset has no usable images; check the bad-file report below and open another source.")

counts = explore.class_counts_frame(index)
options = [ALL, *index.classes]
keep(KEY_GRID_CLASS, ALL, options=options, param="class")


def _bar_picked() -> None:
    """A click on a bar shows that class in the grid, from its first page."""
    picked = st.session_state[_chart_key()].selection.get(charts.CLASS_PICK) or []
    if picked and picked[0].get("class") in index.classes:
        set_value(KEY_GRID_CLASS, picked[0]["class"])
        set_value(KEY_PAGE, 1)


def _class_chosen() -> None:
    """The box changed: a new chart key clears the bar selection, so the same bar can be clicked again."""
    st.session_state[KEY_CHART_N] = st.session_state.get(KEY_CHART_N, 0) + 1
    set_value(KEY_PAGE, 1)


def _chart_key() -> str:
    return f"{KEY_CLASS_CHART}_{st.session_state.get(KEY_CHART_N, 0)}"


with st.container(key=KEY_CLASS_CHART):  # .st-key-class_chart: the browser tests' anchor
    st.altair_chart(charts.class_balance_chart(counts), on_select=_bar_picked, key=_chart_key(), width="stretch")

st.subheader("Images")
left, mid, right = st.columns([2, 1, 1])
chosen = left.selectbox("Class", options, key=KEY_GRID_CLASS, on_change=_class_chosen)
keep(KEY_SEED, 0, cast=int)
seed = mid.number_input("Sample seed", min_value=0, step=1, key=KEY_SEED)
class_name = None if chosen == ALL else chosen
pool = index.num_images if class_name is None else counts.set_index("class").loc[class_name, "images"]
pages = max(1, math.ceil(pool / PER_PAGE))
keep(KEY_PAGE, 1, param="page", cast=int, valid=lambda v: isinstance(v, int) and 1 <= v <= pages)
page = right.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key=KEY_PAGE)

batch = explore.grid_sample(index, class_name, seed=int(seed), page=int(page) - 1, per_page=PER_PAGE)
with st.container(key="image_grid"):
    # One line per caption part, cut with an ellipsis rather than broken mid-name in a narrow column.
    st.html(
        "<style>.st-key-image_grid [data-testid='stImageCaption'] p {white-space: nowrap; overflow: hidden;"
        " text-overflow: ellipsis}</style>"
    )
    # Fixed-width cells that wrap: eight to a row at 1400 px, five at 800 px, no caption squeezed to "tria…".
    for cell, (path, target) in zip(tiles(len(batch), GRID_PX, key="image_grid_cells"), batch, strict=True):
        thumb = cache.thumbnail_uri(path)
        if thumb.startswith("data:"):
            name = short_name(path.rsplit("/", 1)[-1])
            cell.image(thumb, caption=f"{plain(index.classes[target])}  \n{plain(name)}", width="stretch")
        else:
            cell.warning(plain(f"{index.relpath(path)}: {thumb}"))

st.subheader("Sizes, shapes and modes")
headers = cache.header_frame(root, index.verified)
c1, c2, c3 = tiles(3, THIRD)  # three in a row at 1400 px; at 800 px two, then one: whole axis titles
sizes = explore.size_counts(headers)
c1.altair_chart(charts.size_chart(sizes), width="stretch")
if len(sizes) and sizes["bin_px"].iloc[0] > 1:
    c1.caption(f"{len(headers):,} images in many sizes: each point is a {sizes['bin_px'].iloc[0]} px cell.")
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

"""Channels: each RGB channel of one image, normalized, reconstructed, and the dataset's exact stats.

Widget keys (stable, for tests and URLs):
    channels_class, channels_image, channels_upload   the image: class + number, or an upload
    channels_size                                     the pipeline's resize ("native" or pixels)
    norm_choice                                       "Dataset (computed)", "ImageNet", "None", "Custom"
    norm_mean_r, norm_mean_g, norm_mean_b,
    norm_std_r, norm_std_g, norm_std_b                custom mean and std
    channels_compute_stats                            the button that computes the dataset's mean/std
    aug_random_crop, aug_hflip, aug_rotation,
    aug_jitter, aug_count, aug_seed                   the training pipeline's augmentation preview (the
                                                      Train page's train_random_crop ... fields)
Containers (CSS .st-key-<name>): normalized_channels holds the three channels' heatmaps and their colour scale (a
row that wraps at 800 px), pixel_histograms the two histograms.
"""

from __future__ import annotations

import streamlit as st

from lib.app import cache, repairs
from lib.app.cache import compute_stats, current_index, stored_stats
from lib.app.layout import tiles
from lib.app.state import keep, kept, set_value
from lib.app.text import plain, plain_error
from lib.charts.channels import PANEL_PX, channel_heatmaps, pixel_histograms
from lib.data.images import load_rgb
from lib.data.sample import sample_root
from lib.pixels.channels import (
    CHANNELS,
    NORM_CHOICES,
    channel_panels,
    channel_view,
    heatmap_frame,
    histogram_frame,
    norm_values,
    preview_images,
    to_uint8,
)
from lib.pixels.transforms import TransformConfig

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

SIZES = ("native", 32, 64, 96, 128, 224)
AUGMENT_DEFAULTS = {
    "aug_random_crop": True,
    "aug_hflip": True,
    "aug_rotation": 15,
    "aug_jitter": 0.0,
    "aug_count": 8,
    "aug_seed": 0,
}

st.title("Channels")
root = st.session_state.get("dataset_root") or str(sample_root())
try:
    index = current_index(root)
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
if index.num_images == 0:
    st.info("This dataset has no usable images; choose another source on the Dataset page.")
    st.stop()


def compute(where) -> None:
    """Compute the dataset's exact mean/std at this size with a progress bar in `where`, then use them."""
    bar = where.progress(0.0, text="Reading every image...")
    try:
        compute_stats(
            index, size, lambda done, total: bar.progress(done / max(total, 1), text=f"{done:,} / {total:,} images")
        )
    except ValueError as e:
        where.error(plain_error(e))
        st.stop()
    bar.empty()
    # Once computed, the dataset's own is the choice; set on the rerun, before the radio is drawn.
    st.session_state["_norm_computed"] = True
    st.rerun()


with st.sidebar:
    st.header("Pipeline")
    limits = cache.settings()
    # A deployment caps the size so one visitor cannot ask for full-resolution tensors of a huge upload.
    sizes = [x for x in SIZES if x != "native" and x <= limits.max_image_size] if limits.deployed else SIZES
    keep("channels_size", 64 if 64 in sizes else sizes[-1], options=sizes)
    size_choice = st.select_slider("Resize to (pixels a side)", sizes, key="channels_size")
    size = None if size_choice == "native" else int(size_choice)
    size_words = "native size" if size is None else f"{size} px"

    st.header("Mean and std")
    stats = stored_stats(index, size)
    if st.button(f"Compute dataset mean/std at {size_words}", key="channels_compute_stats", disabled=stats is not None):
        compute(st.sidebar)
    if stats is not None:
        st.caption(
            f"Dataset at {size_words}, {stats.num_images:,} images, {stats.num_pixels:,} pixels a channel: "
            f"mean {', '.join(f'{m:.4f}' for m in stats.mean)}; std {', '.join(f'{s:.4f}' for s in stats.std)}"
        )
    if st.session_state.pop("_norm_computed", False):
        set_value("norm_choice", NORM_CHOICES[0])
    keep("norm_choice", NORM_CHOICES[0] if stats is not None else "ImageNet", options=NORM_CHOICES)
    choice = st.radio("Normalize with", NORM_CHOICES, key="norm_choice")
    custom = None
    if choice == "Custom":
        cols = st.columns(3)
        for n in CHANNELS:
            keep(f"norm_mean_{n[0]}", 0.5)
            keep(f"norm_std_{n[0]}", 0.25)
        mean = tuple(
            cols[c].number_input(f"mean {n[0]}", 0.0, 1.0, step=0.01, key=f"norm_mean_{n[0]}")
            for c, n in enumerate(CHANNELS)
        )
        std = tuple(
            cols[c].number_input(f"std {n[0]}", 0.001, 10.0, step=0.01, key=f"norm_std_{n[0]}")
            for c, n in enumerate(CHANNELS)
        )
        custom = (mean, std)

    st.header("Augmentation preview")
    st.caption("The Train page offers the same fields; set them there to train with them.")
    # On by default: a preview of eight identical copies shows nothing.
    for key, default in AUGMENT_DEFAULTS.items():
        keep(key, default)
    random_crop = st.checkbox("Random crop (reflect padding)", key="aug_random_crop")
    hflip = st.checkbox("Horizontal flip", key="aug_hflip")
    rotation = st.slider("Rotation (degrees)", 0, 180, key="aug_rotation")
    jitter = st.slider("Colour jitter", 0.0, 1.0, step=0.05, key="aug_jitter")
    count = st.number_input("Versions", 1, 32, key="aug_count")
    seed = st.number_input("Seed (a run's seed)", 0, 2**31 - 1, key="aug_seed")

stats_missing = choice == NORM_CHOICES[0] and stats is None
try:
    # Statistics not computed at this size yet: show the image unnormalized and offer them (below).
    norm = None if stats_missing else norm_values(choice, (stats.mean, stats.std) if stats else None, custom)
except ValueError as e:
    st.info(plain_error(e))
    st.stop()

left, right = st.columns(2)
keep("channels_class", index.classes[0], options=index.classes, param="class")
class_name = left.selectbox("Class", index.classes, key="channels_class")
paths = [p for p, t in index.samples if index.classes[t] == class_name]
if not paths:
    st.info(f"Class {plain(class_name)} has no usable images; pick another class.")
    st.stop()
current = st.session_state.get("channels_image", kept("channels_image", 0))
if isinstance(current, int) and current >= len(paths):  # the new class has fewer images: its last one
    set_value("channels_image", len(paths) - 1)
in_range = lambda v: isinstance(v, int) and 0 <= v < len(paths)  # noqa: E731
keep("channels_image", 0, param="image", cast=int, valid=in_range)
number = right.number_input(f"Image (0 to {len(paths) - 1})", 0, len(paths) - 1, key="channels_image")
upload_mb = cache.settings().max_upload_mb
# max_upload_size: the browser refuses bigger files and the widget states this limit, not the server's.
upload = st.file_uploader(
    f"Or upload one image (up to {upload_mb} MB)", type=None, key="channels_upload", max_upload_size=upload_mb
)
try:
    img = cache.decoded_upload(upload.getvalue()) if upload is not None else load_rgb(paths[number])
    view = channel_view(img, size, norm)
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
st.caption(plain(upload.name if upload is not None else index.relpath(paths[number])))
if size is not None and img.width != img.height:
    st.caption(
        f"Stretched from {img.width}×{img.height} to {size}×{size}: the pipeline resizes every image to a "
        "square, as training does; choose native to see its own shape."
    )
if stats_missing:
    st.warning(
        f"This dataset's mean and std at {size_words} are not computed yet, so the channels below are not "
        f"normalized. Computing them reads all {index.num_images:,} images once."
    )
    if st.button(f"Compute mean/std at {size_words}", key="channels_compute_here", type="primary"):
        compute(st)

st.subheader("Original and its channels")
for col, picture, caption in zip(
    st.columns(4), [to_uint8(view.x), *channel_panels(view.x)], ["original", *CHANNELS], strict=True
):
    col.image(picture, caption=caption, width="stretch")  # a fixed width overlaps at 800 px

st.subheader("Normalized" if norm else "Not normalized ([0, 1])")
for col, name, m, s in zip(st.columns(3), CHANNELS, view.normalized_mean(), view.normalized_std(), strict=True):
    col.metric(
        f"{name} mean",  # the subheader says whether normalized; a longer label is cut short at 800 px
        f"{m:+.3f}",
        help=f"std {s:.3f}; 0 and 1 when the mean and std fit this image" if norm else f"std {s:.3f}",
    )
heatmaps = channel_heatmaps(heatmap_frame(view.z), normalized=norm is not None)
# .st-key-normalized_channels: the browser test's anchor. Three in a row at 1400 px, one a row at 800 px.
for tile, chart in zip(tiles(len(heatmaps), PANEL_PX, key="normalized_channels"), heatmaps, strict=True):
    tile.altair_chart(chart, width="content" if chart is not heatmaps[-1] else "stretch")

st.subheader("Denormalized back")
a, b, c = st.columns(3)
a.image(to_uint8(view.x), caption="original", width="stretch")
b.image(to_uint8(view.reconstruction), caption="denormalize(normalize(x))", width="stretch")
c.metric("Largest difference", f"{view.max_abs_diff:.2e}", help="max |denormalized - original|, [0, 1] scale")

with st.container(key="pixel_histograms"):  # .st-key-pixel_histograms
    for chart in pixel_histograms(histogram_frame(view), normalized=norm is not None):
        st.altair_chart(chart, width="stretch")

st.subheader("Augmented versions (the training pipeline)")
st.caption(
    f"The first batch a run with this seed and a batch size of {int(count)} would feed its model if every "
    "training image were this one: training's own resize, augmentation and random draws, normalized with "
    "the mean and std chosen above."
)
try:
    mean, std = norm or (None, None)
    config = TransformConfig(
        size,
        random_crop=random_crop,
        hflip=hflip,
        rotation=float(rotation),
        color_jitter=float(jitter),
        mean=mean,
        std=std,
    )
    st.image(preview_images(img, config, int(count), int(seed)), width=96)
except ValueError as e:
    st.error(plain_error(e))

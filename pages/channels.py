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
Containers: normalized_channels, pixel_histograms (CSS .st-key-<name>) hold the two charts.
"""

from __future__ import annotations

import streamlit as st

from lib.app import cache
from lib.app.cache import compute_stats, current_index, stored_stats
from lib.app.text import plain, plain_error
from lib.charts.channels import channel_heatmaps, pixel_histograms
from lib.data.images import load_rgb
from lib.data.sample import sample_root
from lib.pixels.channels import (
    CHANNELS,
    NORM_CHOICES,
    channel_panels,
    channel_view,
    heatmap_frame,
    histogram_frame,
    load_upload,
    norm_values,
    preview_images,
    to_uint8,
)
from lib.pixels.transforms import TransformConfig

SIZES = ("native", 32, 64, 96, 128, 224)
PANEL_PX = 160

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

with st.sidebar:
    st.header("Pipeline")
    limits = cache.settings()
    # A deployment caps the size so one visitor cannot ask for full-resolution tensors of a huge upload.
    sizes = [x for x in SIZES if x != "native" and x <= limits.max_image_size] if limits.deployed else SIZES
    size_choice = st.select_slider(
        "Resize to (pixels a side)", sizes, value=64 if 64 in sizes else sizes[-1], key="channels_size"
    )
    size = None if size_choice == "native" else int(size_choice)

    st.header("Mean and std")
    stats = stored_stats(index, size)
    if st.button("Compute dataset mean/std", key="channels_compute_stats", disabled=stats is not None):
        bar = st.progress(0.0, text="Reading every image...")
        try:
            stats = compute_stats(
                index, size, lambda done, total: bar.progress(done / max(total, 1), text=f"{done:,} / {total:,} images")
            )
        except ValueError as e:
            st.error(plain_error(e))
            st.stop()
        bar.empty()
        st.session_state["norm_choice"] = NORM_CHOICES[0]  # once computed, the dataset's own is the default
    if stats is not None:
        st.caption(
            f"Dataset, {stats.num_images:,} images, {stats.num_pixels:,} pixels a channel: "
            f"mean {', '.join(f'{m:.4f}' for m in stats.mean)}; std {', '.join(f'{s:.4f}' for s in stats.std)}"
        )
    choice = st.radio("Normalize with", NORM_CHOICES, index=0 if stats is not None else 1, key="norm_choice")
    custom = None
    if choice == "Custom":
        cols = st.columns(3)
        mean = tuple(
            cols[c].number_input(f"mean {n[0]}", 0.0, 1.0, 0.5, 0.01, key=f"norm_mean_{n[0]}")
            for c, n in enumerate(CHANNELS)
        )
        std = tuple(
            cols[c].number_input(f"std {n[0]}", 0.001, 10.0, 0.25, 0.01, key=f"norm_std_{n[0]}")
            for c, n in enumerate(CHANNELS)
        )
        custom = (mean, std)

    st.header("Augmentation preview")
    st.caption("The Train page offers the same fields; set them there to train with them.")
    # On by default: a preview of eight identical copies shows nothing.
    random_crop = st.checkbox("Random crop (reflect padding)", True, key="aug_random_crop")
    hflip = st.checkbox("Horizontal flip", True, key="aug_hflip")
    rotation = st.slider("Rotation (degrees)", 0, 180, 15, key="aug_rotation")
    jitter = st.slider("Colour jitter", 0.0, 1.0, 0.0, 0.05, key="aug_jitter")
    count = st.number_input("Versions", 1, 32, 8, key="aug_count")
    seed = st.number_input("Seed (a run's seed)", 0, 2**31 - 1, 0, key="aug_seed")

try:
    norm = norm_values(choice, (stats.mean, stats.std) if stats is not None else None, custom)
except ValueError as e:
    st.info(plain_error(e))
    st.stop()

left, right = st.columns(2)
class_name = left.selectbox("Class", index.classes, key="channels_class")
paths = [p for p, t in index.samples if index.classes[t] == class_name]
if not paths:
    st.info(f"Class {plain(class_name)} has no usable images; pick another class.")
    st.stop()
if st.session_state.get("channels_image", 0) >= len(paths):  # the new class has fewer images
    st.session_state["channels_image"] = len(paths) - 1
number = right.number_input(f"Image (0 to {len(paths) - 1})", 0, len(paths) - 1, 0, key="channels_image")
upload_mb = cache.settings().max_upload_mb
# max_upload_size: the browser refuses bigger files and the widget states this limit, not the server's.
upload = st.file_uploader(
    f"Or upload one image (up to {upload_mb} MB)", type=None, key="channels_upload", max_upload_size=upload_mb
)
try:
    img = load_upload(upload.getvalue()) if upload is not None else load_rgb(paths[number])
    view = channel_view(img, size, norm)
except ValueError as e:
    st.error(plain_error(e))
    st.stop()
st.caption(plain(upload.name if upload is not None else index.relpath(paths[number])))

st.subheader("Original and its channels")
for col, picture, caption in zip(
    st.columns(4), [to_uint8(view.x), *channel_panels(view.x)], ["original", *CHANNELS], strict=True
):
    col.image(picture, caption=caption, width=PANEL_PX)

st.subheader("Normalized")
for col, name, m, s in zip(st.columns(3), CHANNELS, view.normalized_mean(), view.normalized_std(), strict=True):
    col.metric(
        f"{name}: normalized mean", f"{m:+.3f}", help=f"std {s:.3f}; 0 and 1 when the mean and std fit this image"
    )
with st.container(key="normalized_channels"):  # .st-key-normalized_channels: the browser test's anchor
    st.altair_chart(channel_heatmaps(heatmap_frame(view.z), unit="std units" if norm else "[0, 1], not normalized"))

st.subheader("Denormalized back")
a, b, c = st.columns(3)
a.image(to_uint8(view.x), caption="original", width=PANEL_PX)
b.image(to_uint8(view.reconstruction), caption="denormalize(normalize(x))", width=PANEL_PX)
c.metric("Largest absolute difference", f"{view.max_abs_diff:.2e}", help="max |denormalized - original|, [0, 1] scale")

with st.container(key="pixel_histograms"):  # .st-key-pixel_histograms
    st.altair_chart(pixel_histograms(histogram_frame(view)))

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

"""The Channels page's numbers and charts, computed without Streamlit."""

import io

import altair as alt
import numpy as np
import pytest
import torch
from PIL import Image

from lib.charts.channels import channel_heatmaps, histogram_titles, pixel_histograms
from lib.charts.style import title_text
from lib.pixels.channels import (
    NORM_CHOICES,
    channel_panels,
    channel_view,
    heatmap_frame,
    histogram_frame,
    load_upload,
    norm_values,
    preview_images,
)
from lib.pixels.stats import StatsConfig, channel_stats
from lib.pixels.transforms import IMAGENET_MEAN, IMAGENET_STD, TransformConfig


def _rgb(w=40, h=30, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _digits(folder, n=12) -> list[str]:
    """Grayscale 'digits': a bright stroke on black, saved as L (MNIST-like, mean about 0.1)."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        a = np.zeros((28, 28), np.uint8)
        r = int(rng.integers(4, 20))
        a[r : r + 6, 6:22] = rng.integers(180, 256)
        a[4:24, r : r + 4] = 255
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(a, "L").save(paths[-1])
    return paths


def test_view_normalizes_and_reconstructs():
    img = _rgb()
    view = channel_view(img, 32, (IMAGENET_MEAN, IMAGENET_STD))
    x = TransformConfig(image_size=32).build()(img)
    expected = (x.double().numpy() - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(view.z.numpy(), expected, atol=1e-6)
    assert view.max_abs_diff == pytest.approx(float((view.reconstruction - x).abs().max()))
    assert view.max_abs_diff < 1e-6
    np.testing.assert_allclose(view.normalized_mean(), expected.reshape(3, -1).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(view.normalized_std(), expected.reshape(3, -1).std(axis=1), atol=1e-6)


def test_imagenet_on_grayscale_digits_shifts_off_centre(tmp_path):
    paths = _digits(tmp_path / "digits")
    s = channel_stats(paths, StatsConfig(executor="serial"))
    assert s.mean[0] == s.mean[1] == s.mean[2] < 0.3  # grey: equal channels, mostly black
    own = channel_stats(paths, StatsConfig(mean=tuple(s.mean), std=tuple(s.std), executor="serial"))
    imagenet = channel_stats(paths, StatsConfig(mean=IMAGENET_MEAN, std=IMAGENET_STD, executor="serial"))
    np.testing.assert_allclose(own.mean, 0, atol=1e-6)
    # The wrong statistics push every channel's normalized mean well below 0, each by a different amount.
    assert all(m < -0.5 for m in imagenet.mean) and len({round(m, 3) for m in imagenet.mean}) == 3
    view = channel_view(Image.open(paths[0]).convert("RGB"), None, (IMAGENET_MEAN, IMAGENET_STD))
    assert all(m < -0.5 for m in view.normalized_mean())


def test_norm_values():
    assert norm_values("ImageNet") == (IMAGENET_MEAN, IMAGENET_STD)
    assert norm_values("None") is None
    assert norm_values("Custom", custom=((0.1, 0.2, 0.3), (1, 2, 3))) == ((0.1, 0.2, 0.3), (1, 2, 3))
    assert norm_values(NORM_CHOICES[0], dataset=([0.5] * 3, [0.2] * 3)) == ((0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="Compute"):
        norm_values(NORM_CHOICES[0])


def test_panels_keep_one_channel_each():
    view = channel_view(_rgb(), None, None)
    rgb = (view.x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    for c, panel in enumerate(channel_panels(view.x)):
        assert panel.shape == rgb.shape and panel.dtype == np.uint8
        np.testing.assert_array_equal(panel[..., c], rgb[..., c])
        assert panel.sum() == panel[..., c].sum()


def test_heatmap_frame_is_small_and_faithful():
    z = torch.randn(3, 300, 200, generator=torch.Generator().manual_seed(0))
    df = heatmap_frame(z)
    assert df["x"].max() < 64 and df["y"].max() == 63 and set(df["channel"]) == {"red", "green", "blue"}
    # Area averaging keeps each channel's mean.
    means = df.groupby("channel")["value"].mean()
    assert means["green"] == pytest.approx(float(z[1].mean()), abs=0.02)
    small = heatmap_frame(z[:, :4, :5])
    assert len(small) == 3 * 20 and small.query("channel == 'blue' and x == 2 and y == 3")[
        "value"
    ].item() == pytest.approx(float(z[2, 3, 2]))


def test_histograms_count_every_pixel():
    view = channel_view(_rgb(), None, (IMAGENET_MEAN, IMAGENET_STD))
    df = histogram_frame(view, bins=20)
    counts = df.groupby(["stage", "channel"])["count"].sum()
    assert (counts == 40 * 30).all() and len(counts) == 6
    before = df[df.stage.str.startswith("before") & (df.channel == "red")]
    expected, _ = np.histogram(view.x[0].numpy(), bins=20, range=(0, 1))
    np.testing.assert_array_equal(before["count"], expected)


def test_charts_have_titles_tooltips_and_one_centred_colour_scale():
    view = channel_view(_rgb(), 32, (IMAGENET_MEAN, IMAGENET_STD))
    with alt.data_transformers.enable("default", max_rows=None):
        frame = heatmap_frame(view.z)
        *heats, bar = [c.to_dict() for c in channel_heatmaps(frame)]
    assert [title_text(h) for h in heats] == ["Red, normalized", "Green, normalized", "Blue, normalized"]
    # One scale for the three, symmetric around 0 (its ends the largest |z| rounded up to a tenth), 0 on the bar.
    top = np.ceil(np.abs(view.z.numpy()).max() * 10) / 10
    for h in heats:
        assert h["encoding"]["color"]["scale"]["domain"] == pytest.approx([-top, -top / 2, 0, top / 2, top])
        assert "tooltip" in h["encoding"] and h["encoding"]["x"]["title"] == "x (pixel)"
    assert bar["encoding"]["x"]["axis"]["values"] == pytest.approx([-top, 0, top])
    assert title_text(bar) == "Colour scale (std units)"
    hists = [h.to_dict() for h in pixel_histograms(histogram_frame(view))]
    assert [title_text(h) for h in hists] == list(histogram_titles(True))
    assert all("tooltip" in h["layer"][0]["encoding"] and h["autosize"]["type"] == "fit-x" for h in hists)
    assert [h["layer"][0]["encoding"]["x"]["title"] for h in hists] == [
        "Pixel value ([0, 1])",
        "Pixel value (std units)",
    ]


def test_previews_are_displayable_and_seeded():
    cfg = TransformConfig(image_size=24, hflip=True, rotation=20, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    a, b = preview_images(_rgb(), cfg, 4, 1), preview_images(_rgb(), cfg, 4, 1)
    assert all(x.shape == (24, 24, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_upload_decodes_like_a_file_and_rejects_junk():
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 6), 77, np.uint8), "L").save(buf, format="PNG")
    img = load_upload(buf.getvalue())
    assert img.mode == "RGB" and img.size == (6, 5) and img.getpixel((0, 0)) == (77, 77, 77)
    with pytest.raises(ValueError, match="upload a PNG"):
        load_upload(b"not an image")

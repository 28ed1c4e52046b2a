"""What the Channels page shows, computed without Streamlit: channel panels, the normalized image,
its reconstruction, histograms and augmented previews, as arrays and small DataFrames."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lib.data.images import load_rgb
from lib.pixels.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TransformConfig,
    augmented_previews,
    denormalize,
    normalize,
)

CHANNELS = ("red", "green", "blue")
NORM_CHOICES = ("Dataset (computed)", "ImageNet", "None", "Custom")
# Pixels per side in a heatmap: keeps the chart's data small, and each cell at least 4 screen pixels of a ~256 px panel.
HEATMAP_MAX_SIDE = 64


@dataclass
class ChannelView:
    """One image through the evaluation pipeline: x in [0, 1], z normalized, both (3, H, W)."""

    x: torch.Tensor
    z: torch.Tensor
    reconstruction: torch.Tensor  # denormalize(z): x again, to float tolerance
    max_abs_diff: float  # largest |reconstruction - x|

    def normalized_mean(self) -> list[float]:
        return self.z.double().mean(dim=(1, 2)).tolist()

    def normalized_std(self) -> list[float]:
        return self.z.double().std(dim=(1, 2), correction=0).tolist()


def norm_values(choice: str, dataset: tuple | None = None, custom: tuple | None = None) -> tuple | None:
    """(mean, std) for a sidebar choice, or None for no normalization.

    Raises:
        ValueError: for an unknown choice, or dataset/custom values that are missing.
    """
    if choice == "ImageNet":
        return IMAGENET_MEAN, IMAGENET_STD
    if choice == "None":
        return None
    if choice not in NORM_CHOICES:
        raise ValueError(f"Unknown normalization {choice!r}; choose one of {', '.join(NORM_CHOICES)}.")
    values = dataset if choice == "Dataset (computed)" else custom
    if values is None:
        raise ValueError("The dataset's mean and std are not computed yet; press Compute in the sidebar.")
    return tuple(values[0]), tuple(values[1])


def load_upload(data: bytes) -> Image.Image:
    """Decode an uploaded image file the same way as a dataset image.

    Raises:
        ValueError: when the upload is not an image Pillow can decode.
    """
    try:
        return load_rgb(io.BytesIO(data))
    except ValueError as e:
        raise ValueError(f"The upload cannot be used ({e}); upload a PNG, JPEG or other image file.") from None


def channel_view(img: Image.Image, size: int | None, norm: tuple | None) -> ChannelView:
    """Run `img` through the evaluation pipeline (resize, ToDtype) and normalize with `norm`."""
    x = TransformConfig(image_size=size).build()(img)  # (3, H, W) in [0, 1]
    if norm is None:
        return ChannelView(x, x.clone(), x.clone(), 0.0)
    mean, std = norm
    z = normalize(x, mean, std)
    rec = denormalize(z, mean, std)
    return ChannelView(x, z, rec, float((rec - x).abs().max()))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A (3, H, W) tensor in [0, 1] as an (H, W, 3) uint8 array for display (clipped)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def channel_panels(x: torch.Tensor) -> list[np.ndarray]:
    """Each channel of a (3, H, W) image in [0, 1] as its own tinted (H, W, 3) uint8 panel."""
    rgb = to_uint8(x)
    panels = []
    for c in range(3):
        panel = np.zeros_like(rgb)
        panel[..., c] = rgb[..., c]
        panels.append(panel)
    return panels


def heatmap_frame(z: torch.Tensor, max_side: int = HEATMAP_MAX_SIDE) -> pd.DataFrame:
    """Long DataFrame (channel, x, y, value) of a (3, H, W) tensor, area-averaged to <= max_side a side."""
    h, w = z.shape[-2:]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        out = (max(1, round(h * scale)), max(1, round(w * scale)))
        z = torch.nn.functional.adaptive_avg_pool2d(z[None].float(), out)[0]
    c, h, w = z.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return pd.DataFrame(
        {
            "channel": np.repeat(CHANNELS, h * w),
            "x": np.tile(xs.ravel(), c),
            "y": np.tile(ys.ravel(), c),
            "value": z.reshape(-1).double().numpy(),
        }
    )


def histogram_frame(view: ChannelView, bins: int = 64) -> pd.DataFrame:
    """Per-channel histograms before ([0, 1]) and after normalization, binned with numpy.

    Returns:
        DataFrame with stage, channel, start, end, count (bins rows per channel and stage).
    """
    rows = []
    for stage, t in (("before: [0, 1]", view.x), ("after: normalized", view.z)):
        values = t.double().numpy().reshape(3, -1)  # (C, H*W)
        # One range for the three channels of a stage, so their bars line up and compare.
        span = (0.0, 1.0) if stage.startswith("before") else _finite_range(values)
        for c, name in enumerate(CHANNELS):
            v = values[c][np.isfinite(values[c])]
            counts, edges = np.histogram(v, bins=bins, range=span)
            rows.append(
                pd.DataFrame({"stage": stage, "channel": name, "start": edges[:-1], "end": edges[1:], "count": counts})
            )
    return pd.concat(rows, ignore_index=True)


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return -1.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def preview_images(img: Image.Image, config: TransformConfig, n: int, seed: int) -> list[np.ndarray]:
    """`n` augmented versions of `img` under `seed`, denormalized back to displayable uint8 arrays."""
    out = []
    for t in augmented_previews(img, config, n, seed):
        if config.mean is not None:
            t = denormalize(t, config.mean, config.std)
        out.append(to_uint8(t))
    return out

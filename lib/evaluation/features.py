"""What each convolutional block of a model computes for one image, and its first layer's filters.

Activations come from forward hooks on the blocks that `attributions.conv_blocks` names; pictures
are uint8 RGB arrays (a colour map, no plotting library) the page shows as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lib.charts.scales import DIVERGING
from lib.evaluation.attributions import conv_blocks

# A perceptually ordered dark-to-bright map (anchors of matplotlib's "inferno"), interpolated to 256.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
# A diverging map for signed attributions (ColorBrewer's RdBu): blue against the class, near white 0, red for it.
_DIVERGING = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in DIVERGING], np.float64)


def _lut(anchors: np.ndarray, n: int = 256) -> np.ndarray:
    """n colours uint8 (n, 3) interpolated linearly between equally spaced anchors."""
    at, steps = np.linspace(0, 1, len(anchors)), np.linspace(0, 1, n)
    return np.stack([np.interp(steps, at, anchors[:, c]) for c in range(3)], 1).round().astype(np.uint8)


LUT = _lut(_ANCHORS)  # (256, 3)
SIGNED_LUT = _lut(_DIVERGING, 257)  # (257, 3): an odd count puts 0 on entry 128 exactly, the middle anchor
# Maps whose sign means something: Integrated Gradients and Occlusion (a patch whose removal raises the logit was
# evidence against the class). Grad-CAM (after its ReLU) and Saliency (a magnitude) are never negative.
SIGNED_METHODS = frozenset({"ig", "occlusion"})


@dataclass
class FeatureMaps:
    """One block's activations for one image."""

    name: str
    activations: np.ndarray  # float32 (C, h, w)


def feature_maps(model: nn.Module, x: torch.Tensor) -> list[FeatureMaps]:
    """The output of every conv block for one normalized input x (1, 3, H, W), input to output; [] without conv."""
    blocks = conv_blocks(model)
    seen: dict[str, torch.Tensor] = {}
    # Copies: a later in-place ReLU would otherwise change what an earlier hook saw.
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.detach().clone())) for n, m in blocks
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [FeatureMaps(n, seen[n][0].float().cpu().numpy()) for n, _ in blocks]


def first_filters(model: nn.Module) -> np.ndarray | None:
    """The first conv layer's filters as RGB tiles uint8 (N, k, k, 3), each scaled min..max to 0..255.

    None when the model has no Conv2d or its first one does not read the 3 colour channels.
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        return None
    w = conv.weight.detach().float().cpu().numpy()  # (N, 3, k, k)
    low = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = (w - low) / np.where(span > 0, span, 1.0)
    return np.round(tiles * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def colorize(
    values: np.ndarray, low: float | None = None, high: float | None = None, lut: np.ndarray = LUT
) -> np.ndarray:
    """A float (h, w) map as uint8 RGB (h, w, 3) through `lut`, low..high (default its own min..max) to its ends."""
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    top = len(lut) - 1
    return lut[np.clip(np.round(scaled * top), 0, top).astype(np.intp)]


def grid(tiles: np.ndarray, columns: int, scale: int = 1, gap: int = 1) -> np.ndarray:
    """Tiles uint8 (N, h, w, 3) laid out in rows of `columns`, each enlarged `scale` times, white gaps."""
    n, h, w, _ = tiles.shape
    rows = -(-n // columns)
    big = tiles.repeat(scale, 1).repeat(scale, 2)
    H, W = h * scale + gap, w * scale + gap
    out = np.full((rows * H - gap, columns * W - gap, 3), 255, np.uint8)
    for i, tile in enumerate(big):
        r, c = divmod(i, columns)
        out[r * H : r * H + h * scale, c * W : c * W + w * scale] = tile
    return out


def activation_grid(maps: FeatureMaps, columns: int = 16, size: int = 48) -> np.ndarray:
    """A block's channels side by side on one shared scale (0..the layer's maximum), so a dead channel looks dark."""
    acts = maps.activations
    high = float(acts.max())
    low = min(0.0, float(acts.min()))
    tiles = np.stack([colorize(a, low, high) for a in acts])
    scale = max(1, size // acts.shape[-1])
    return grid(tiles, min(columns, len(tiles)), scale)


def map_scale(heat: np.ndarray, signed: bool) -> tuple[list[float], list[str]]:
    """The colour scale an attribution map is drawn with: (domain, colours), the anchors' values and hex colours.

    Signed: -m..m, m the largest |value| (0 in the middle, near white; blue against the class, red for it).
    Unsigned: 0..the map's maximum, dark to bright (a negative value, if any, shows as 0).
    A map of zeros gets the ends -1..1 or 0..1.
    """
    anchors = _DIVERGING if signed else _ANCHORS
    top = float(np.abs(heat).max()) if signed else float(np.maximum(heat, 0).max())
    top = top if top > 0 else 1.0
    domain = np.linspace(-top if signed else 0.0, top, len(anchors)).tolist()
    return domain, ["#" + "".join(f"{round(c):02x}" for c in a) for a in anchors]


def overlay(image: np.ndarray, heat: np.ndarray, opacity: float, *, signed: bool = False) -> np.ndarray:
    """An attribution map over its image: uint8 (H, W, 3) blended with the coloured map at `opacity` (0..1).

    The map is coloured on `map_scale(heat, signed)`: signed through SIGNED_LUT, else through LUT.
    """
    domain, _ = map_scale(heat, signed)
    coloured = colorize(heat, domain[0], domain[-1], SIGNED_LUT if signed else LUT)
    blend = (1 - opacity) * image.astype(np.float32) + opacity * coloured.astype(np.float32)
    return np.round(blend).astype(np.uint8)

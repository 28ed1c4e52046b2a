"""The one resize, as torchvision does it to a PIL image: a square one (`v2.Resize((size, size), antialias=True)`)
or a pretrained weights' own (`weights.transforms()`: the shorter side to a resize size, then the centre crop).

Used by the engine's decoder, the statistics workers and the Channels preview, so all three see the
same pixels. Uses only Pillow (statistics worker processes start without torch), and imports it only when it
resizes: the training config names `Resizing` and the filters, and `--help` imports neither numpy nor Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

INTERPOLATIONS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC"}  # name -> Pillow's Image.Resampling member


@dataclass(frozen=True)
class Resizing:
    """How an image becomes (size, size): squashed to it (short_side None), or as a weights' transforms() do it,
    its shorter side to short_side (the aspect ratio kept), then the centre size x size.

    interpolation: "bilinear" or "bicubic" (Pillow's filters, antialiased when shrinking, as torchvision's on PIL).
    """

    size: int
    short_side: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation {self.interpolation!r}; choose bilinear or bicubic.")
        if self.short_side is not None and self.short_side < self.size:
            raise ValueError(
                f"The resize size {self.short_side} is below the crop {self.size}; raise it to {self.size}."
            )


def side(how: int | Resizing | None) -> int | None:
    """The side of the square a resize gives (None: the image's own size)."""
    return how.size if isinstance(how, Resizing) else how


def resize(img: Image.Image, how: int | Resizing | None) -> Image.Image:
    """`img` as (size, size): an int or a square Resizing squashes it, a Resizing with short_side resizes then
    centre-crops; None keeps it.

    These are torchvision's own paths for PIL input (F.resize is `img.resize`, F.center_crop is `img.crop` at
    round((H - size) / 2)), so the bytes are the same (tests/test_resize.py).
    """
    if how is None:
        return img
    how = how if isinstance(how, Resizing) else Resizing(how)
    from PIL import Image

    resample = Image.Resampling[INTERPOLATIONS[how.interpolation]]
    if how.short_side is None:
        return img if img.size == (how.size, how.size) else img.resize((how.size, how.size), resample)
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(how.short_side * long / short)  # torchvision's _compute_resized_output_size
    new_w, new_h = (how.short_side, new_long) if w <= h else (new_long, how.short_side)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    top, left = int(round((new_h - how.size) / 2.0)), int(round((new_w - how.size) / 2.0))
    return img.crop((left, top, left + how.size, top + how.size))

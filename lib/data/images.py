"""Opening image files: a cheap header check, and one decode path that always gives RGB.

Every page, the statistics and the trainer decode through `load_rgb`, so an image looks the
same everywhere. Alpha is composited over a white background (how viewers show it), 16-bit
images are scaled to 8 bits, palette and CMYK images are converted, and EXIF orientation
is applied.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# torchvision's IMG_EXTENSIONS plus .gif.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# Truncated files must fail loudly, not decode as grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# `_strict_open` refuses anything over Pillow's pixel limit itself, so the warning Pillow gives between
# one and two times the limit is only noise. (warnings.catch_warnings, which could turn it into an error,
# is not thread-safe: concurrent header reads could let a bomb through or leave the filter changed.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits, checked from the header before any pixel is decoded (Settings sets them)."""

    max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485
    max_frames: int = 1_000


LIMITS = ImageLimits()


def set_limits(max_pixels: int, max_frames: int) -> None:
    """Apply a deployment's per-image limits to every image this process opens from now on."""
    global LIMITS
    LIMITS = ImageLimits(max_pixels, max_frames)
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own check (it raises past twice this) agrees


@dataclass(frozen=True)
class Header:
    """What an image's header says, read without decoding pixels."""

    width: int
    height: int
    mode: str
    format: str


def is_image_file(name: str) -> bool:
    """True for a file name with an image extension that is not hidden (`._x.jpg`, `.DS_Store`)."""
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def read_header(path: str) -> Header:
    """Read size, mode and format from the header only.

    Raises:
        ValueError: with the reason the file cannot be used (empty, not an image, too many pixels).
    """
    try:
        with _strict_open(path) as img:
            return Header(img.width, img.height, img.mode, img.format or "")
    except Exception as e:  # noqa: BLE001 - any decoder error means "unusable", with its reason
        # Diagnose only on failure: two extra stat calls per good file would be a third of the cost.
        raise ValueError(_missing_or_empty(path) or _reason(e)) from None


def _missing_or_empty(path: str) -> str | None:
    if not os.path.exists(path):
        return "dangling symbolic link" if os.path.islink(path) else "file not found"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "empty file (0 bytes)"
    return None


def load_rgb(path: str) -> Image.Image:
    """Decode an image fully and return it as 8-bit RGB, the same way everywhere.

    Raises:
        ValueError: with the reason the file cannot be decoded (truncated, corrupt, too large).
    """
    try:
        with _strict_open(path) as img:
            img.load()
            return to_rgb(img)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ValueError(_reason(e)) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: orientation applied, alpha over white, 16-bit scaled."""
    if getattr(img, "is_animated", False):  # not n_frames: for a GIF that walks every frame
        img.seek(0)  # animated GIF/WebP/TIFF: first frame
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey to 8-bit: 16-bit range scaled down, floats taken as 0-1."""
    a = np.asarray(img)
    if img.mode == "F":
        a = np.clip(a, 0.0, 1.0) * 255.0
    else:
        a = np.clip(a.astype(np.int64), 0, 65535) / 257.0  # 65535 -> 255 exactly
    return Image.fromarray(np.rint(a).astype(np.uint8), mode="L")


FRAME_BUDGET = 4  # an animated image's frames may add up to this many images of the per-image pixel limit


class TooLarge(ValueError):
    """An image over this process's per-image limits (pixels or frames), found from its header."""


class _strict_open:
    """Image.open that refuses, from the header and before any decoding, an image over LIMITS: more pixels
    (Pillow itself only warns up to twice its limit) or more animation frames than allowed."""

    def __init__(self, path):
        self.path = path
        self.img: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        img = Image.open(self.path)  # reads the header only; raises DecompressionBombError past twice the limit
        limits = LIMITS
        max_pixels = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
        try:
            if img.width * img.height > max_pixels:
                raise TooLarge(
                    f"too many pixels ({img.width}x{img.height} = {img.width * img.height:,}, over this app's "
                    f"limit of {max_pixels:,} per image); downscale it"
                )
            # Counting frames decodes them (a GIF seeks frame by frame): at most FRAME_BUDGET images' worth.
            frames = min(limits.max_frames, max(1, FRAME_BUDGET * max_pixels // max(1, img.width * img.height)))
            if getattr(img, "is_animated", False) and _frames_over(img, frames):
                raise TooLarge(
                    f"too many frames (over {frames:,} at {img.width}x{img.height}, this app's limit of "
                    f"{limits.max_frames:,} frames or {FRAME_BUDGET * max_pixels:,} pixels of frames per image)"
                )
        except BaseException:
            img.close()
            raise
        self.img = img
        return img

    def __exit__(self, *exc) -> None:
        if self.img is not None:
            self.img.close()


def _frames_over(img: Image.Image, limit: int) -> bool:
    """Whether an animated image has more than `limit` frames, reading at most limit + 1 frame headers."""
    try:
        img.seek(limit)  # frame `limit` (0-based) exists only when there are more than `limit`
        return True
    except EOFError:
        return False
    finally:
        img.seek(0)


def _reason(e: Exception) -> str:
    """A short, user-facing reason for a decoder exception."""
    if isinstance(e, FileNotFoundError):
        return "file not found (deleted or moved since the folder was read); rescan the folder"
    if isinstance(e, TooLarge):
        return str(e)
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too many pixels (over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,}): possible decompression bomb"
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(e, OSError) and "truncated" in str(e).lower():
        return "truncated image"
    if isinstance(e, (IsADirectoryError, PermissionError)):
        return "cannot be read: " + (e.strerror or str(e))
    detail = " ".join(str(e).split())  # one line: reasons end up in one-line reports
    return f"corrupt image ({type(e).__name__}: {detail})"

"""The one resize: what `torchvision.transforms.v2.Resize((size, size), antialias=True)` does to a PIL image.

Used by the engine's decoder, the statistics workers and the Channels preview, so all three see the
same pixels. Imports only Pillow: statistics worker processes start without torch.
"""

from __future__ import annotations

from PIL import Image


def resize(img: Image.Image, size: int | None) -> Image.Image:
    """`img` resized to (size, size) with Pillow's bilinear filter (antialiased when shrinking); None keeps it.

    This is v2.Resize's own path for PIL input, so the bytes are the same (tests/test_resize.py).
    """
    if size is None or img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)

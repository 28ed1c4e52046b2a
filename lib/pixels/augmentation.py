"""The augmentation knobs, shared by TrainConfig, the Train page and the Channels preview.

Imports nothing heavy (no torch), so a config or a page can hold one cheaply; lib.pixels.transforms
applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

AUGMENT_SEED_OFFSET = 2  # a run with seed s draws augmentations from s + 2 (init uses s, shuffling s + 1)


@dataclass(frozen=True)
class Augmentation:
    """Random changes to each training image, drawn per image, applied in this order.

    hflip: mirror left-right with probability 0.5.
    random_crop: pad each side by `crop_padding(S)` = max(1, S // 8) pixels, reflecting the edge (4 px at
        32 px, the CIFAR recipe's padding, though torchvision's RandomCrop pads with zeros by default), then
        crop S x S at a uniformly random offset.
    rotation: rotate about the centre by an angle uniform in [-rotation, +rotation] degrees (positive is
        counter-clockwise, as torchvision's rotate), bilinear, corners filled with black.
    color_jitter: j scales brightness, then contrast, then saturation, each by its own factor uniform in
        [max(0, 1 - j), 1 + j], with torchvision's adjust_brightness/contrast/saturation formulas. No hue.
    """

    random_crop: bool = False
    hflip: bool = False
    rotation: float = 0.0
    color_jitter: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"Rotation {self.rotation} is out of range; choose between 0 and 180 degrees.")
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"Colour jitter {self.color_jitter} is out of range; choose between 0 and 1.")

    @property
    def enabled(self) -> bool:
        return self.random_crop or self.hflip or self.rotation > 0 or self.color_jitter > 0


def crop_padding(size: int) -> int:
    """Pixels of reflect padding on each side before a random crop of a size x size image."""
    return max(1, size // 8)

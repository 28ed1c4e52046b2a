"""The one transform pipeline: resize, augmentation, normalization. The channels page previews
exactly what training uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from lib.pixels.resize import resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Return `(img - mean[c]) / std[c]` for each channel c of a (..., C, H, W) tensor.

    Raises:
        ValueError: when a std is zero, or mean/std do not have one value per channel.
    """
    m, s = _per_channel(img, mean, std)
    return (img - m) / s


def denormalize(img: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The exact inverse of `normalize`: `img * std[c] + mean[c]`.

    Raises:
        ValueError: as `normalize`.
    """
    m, s = _per_channel(img, mean, std)
    return img * s + m


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 tensor (3, H, W), as `v2.PILToTensor` gives it."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _per_channel(img: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    if img.ndim < 3:
        raise ValueError(f"Expected an image tensor of shape (..., C, H, W), got shape {tuple(img.shape)}.")
    channels = img.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"The image has {channels} channels but mean has {len(mean)} values and std has {len(std)}; "
            "give one mean and one std per channel."
        )
    if any(float(x) == 0.0 for x in std):
        raise ValueError(f"std contains a zero ({list(std)}); every std must be non-zero.")
    dtype = img.dtype if img.is_floating_point() else torch.float32
    m = torch.as_tensor(mean, dtype=dtype, device=img.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=img.device).view(-1, 1, 1)
    return m, s


@dataclass(frozen=True)
class TransformConfig:
    """Everything that turns a decoded RGB image into the tensor a model sees.

    Augmentation (crop, flip, rotation, jitter) applies only when building for training.
    `mean`/`std` of None means no normalization (values stay in [0, 1]).
    """

    image_size: int | None = 64
    random_crop: bool = False
    hflip: bool = False
    rotation: float = 0.0
    color_jitter: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.image_size is not None and not 4 <= self.image_size <= 1024:
            raise ValueError(f"Image size {self.image_size} is out of range; choose between 4 and 1024 pixels.")
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"Rotation {self.rotation} is out of range; choose between 0 and 180 degrees.")
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"Colour jitter {self.color_jitter} is out of range; choose between 0 and 1.")
        if (self.mean is None) != (self.std is None):
            raise ValueError("Give both mean and std for normalization, or neither.")
        if self.mean is not None:
            # Tuples, so the config hashes and compares by value (cache keys, checkpoints).
            object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
            object.__setattr__(self, "std", tuple(float(s) for s in self.std))
            if len(self.mean) != 3 or len(self.std) != 3:
                raise ValueError("Give three means and three stds, one per RGB channel.")
            if any(s == 0.0 for s in self.std):
                raise ValueError("std contains a zero; every std must be non-zero.")

    def build(self, train: bool = False) -> Callable[[Image.Image], torch.Tensor]:
        """A callable RGB PIL image -> float tensor (3, H, W)."""
        steps: list = []
        if self.image_size is not None:
            steps.append(partial(resize, size=self.image_size))
        if train:
            steps += self._augmentations()
        steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
        if self.mean is not None:
            steps.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(steps)

    def _augmentations(self) -> list:
        steps: list = []
        if self.random_crop and self.image_size is not None:
            steps.append(v2.RandomCrop(self.image_size, padding=max(1, self.image_size // 8), padding_mode="reflect"))
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if self.rotation:
            steps.append(v2.RandomRotation(self.rotation))
        if self.color_jitter:
            j = self.color_jitter
            steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(0.5, j / 2)))
        return steps

    def to_dict(self) -> dict:
        return asdict(self)


def augmented_previews(img: Image.Image, config: TransformConfig, n: int, seed: int) -> list[torch.Tensor]:
    """`n` outputs of the training pipeline `config.build(train=True)` on one RGB image.

    The same seed gives the same tensors; torch's global random state is left as it was.

    Returns:
        n float tensors (3, H, W), normalized when the config normalizes.
    """
    if not 1 <= n <= 64:
        raise ValueError(f"Preview count {n} is out of range; choose between 1 and 64.")
    pipeline = config.build(train=True)
    # v2's random transforms draw from torch's global generator: fork it, do not disturb training.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [pipeline(img) for _ in range(n)]

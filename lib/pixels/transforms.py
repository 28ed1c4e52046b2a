"""The one transform pipeline: resize, augmentation, normalization.

An image is resized once (lib.pixels.resize) and kept as uint8 (3, S, S). `model_input` turns a batch
of those into what a model sees: on the device, scaled to [0, 1] as `v2.ToDtype(scale=True)` does,
augmented per image by `augment_batch` (training only, draws from a seeded CPU generator), normalized.
The engine calls `model_input` for every batch; the Channels preview calls it on copies of one image,
so for the same image, settings and seed the preview is the tensor training feeds the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from lib.pixels.augmentation import AUGMENT_SEED_OFFSET, Augmentation, crop_padding
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


def augmentation_generator(seed: int) -> torch.Generator:
    """The CPU generator a run with `seed` draws its augmentations from (any device: the same draws)."""
    return torch.Generator().manual_seed(seed + AUGMENT_SEED_OFFSET)


def augment_batch(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """`aug` applied to each image of x: float (B, 3, H, W) in [0, 1], on any device; every draw from `generator`."""
    b, _, h, w = x.shape
    if aug.hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    if aug.random_crop:
        p = crop_padding(min(h, w))
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator)
        x = _crop(F.pad(x, (p, p, p, p), mode="reflect"), dy.to(x.device), dx.to(x.device), h, w)
    if aug.rotation:
        angles = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * aug.rotation
        x = _rotate(x, angles)
    if aug.color_jitter:
        j = aug.color_jitter
        factors = (1 + (torch.rand(b, 3, generator=generator, dtype=torch.float64) * 2 - 1) * j).clamp_min(0)
        x = _jitter(x, factors.to(x.device, x.dtype))
    return x


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Each image's (h, w) window at its own offset (dy, dx), each (B, 1), by one gather."""
    b, c = padded.shape[:2]
    d = padded.device
    rows = (dy + torch.arange(h, device=d))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(w, device=d))[:, None, None, :]  # (B, 1, 1, W)
    return padded[
        torch.arange(b, device=d)[:, None, None, None], torch.arange(c, device=d)[None, :, None, None], rows, cols
    ]


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle (B,) in degrees about its centre; outside pixels are 0."""
    b, _, h, w = x.shape
    a = torch.deg2rad(degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    # The grid maps output to input coordinates, normalized to [-1, 1] per axis: scale by the aspect ratio
    # so the rotation is one in pixels, not in the normalized square.
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta.to(x.device, x.dtype), [b, 3, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation by per-image factors (B, 3): torchvision's blends, batched."""
    view = factors.view(-1, 3, 1, 1, 1)  # factor k of image i: view[i, k], broadcast over (C, H, W)
    x = (x * view[:, 0]).clamp(0, 1)
    gray_mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)  # (B, 1, 1, 1)
    x = (view[:, 1] * x + (1 - view[:, 1]) * gray_mean).clamp(0, 1)
    return (view[:, 2] * x + (1 - view[:, 2]) * _gray(x)).clamp(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) with torchvision's rgb_to_grayscale weights."""
    r, g, b = x.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def model_input(
    images: torch.Tensor,
    *,
    mean_std: tuple | None = None,
    augmentation: Augmentation | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """uint8 images (B, 3, H, W) -> the float batch a model sees, on `device`.

    Scaled to [0, 1] (`v2.ToDtype(float32, scale=True)`), then augmented when `augmentation` is enabled
    (draws from `generator`), then normalized with `mean_std` (None: not normalized).
    """
    # v2.ToDtype(float32, scale=True) on uint8, written out: importing torchvision costs a trainer seconds.
    x = images.to(device, non_blocking=True).to(torch.float32).mul_(1.0 / 255)
    if augmentation is not None and augmentation.enabled:
        if generator is None:
            raise ValueError("Augmentation needs a generator; pass augmentation_generator(seed).")
        x = augment_batch(x, augmentation, generator)
    return normalize(x, *mean_std) if mean_std is not None else x


@dataclass(frozen=True)
class TransformConfig:
    """What the Channels page previews: resize, the augmentation fields of TrainConfig, normalization.

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
        self.augmentation()  # validates
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

    def augmentation(self) -> Augmentation:
        return Augmentation(self.random_crop, self.hflip, self.rotation, self.color_jitter)

    def mean_std(self) -> tuple | None:
        return (self.mean, self.std) if self.mean is not None else None

    def build(self) -> Callable[[Image.Image], torch.Tensor]:
        """The evaluation pipeline (no augmentation): RGB PIL image -> float tensor (3, H, W)."""
        return lambda img: model_input(to_uint8_tensor(resize(img, self.image_size))[None], mean_std=self.mean_std())[0]

    def to_dict(self) -> dict:
        return asdict(self)


def augmented_previews(img: Image.Image, config: TransformConfig, n: int, seed: int) -> list[torch.Tensor]:
    """The first batch a run with `seed` would feed its model if all its n training images were `img`.

    One batch of n copies of the resized image through `model_input` with `augmentation_generator(seed)`:
    the engine's own call. Torch's global random state is not touched.

    Returns:
        n float tensors (3, H, W), normalized when the config normalizes.
    """
    if not 1 <= n <= 64:
        raise ValueError(f"Preview count {n} is out of range; choose between 1 and 64.")
    x = to_uint8_tensor(resize(img, config.image_size))  # (3, H, W)
    batch = x.expand(n, *x.shape)  # (n, 3, H, W)
    out = model_input(
        batch, mean_std=config.mean_std(), augmentation=config.augmentation(), generator=augmentation_generator(seed)
    )
    return list(out)

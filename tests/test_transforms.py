"""normalize/denormalize against torchvision, and the preview's seeding (its equality with training: test_augmentation.py)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from lib.pixels.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TransformConfig,
    augmented_previews,
    denormalize,
    normalize,
)

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.05)


@pytest.mark.parametrize("shape", [(3, 8, 5), (4, 3, 6, 6)])
def test_normalize_matches_torchvision(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(normalize(x, MEAN, STD), F.normalize(x, list(MEAN), list(STD)), rtol=0, atol=0)


def test_normalize_formula_in_float64():
    x = np.random.default_rng(1).random((3, 4, 4))
    expected = (x - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    np.testing.assert_allclose(normalize(torch.from_numpy(x), MEAN, STD).numpy(), expected, rtol=1e-15)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_denormalize_inverts_normalize(dtype, atol):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=dtype)
    for mean, std in ((MEAN, STD), (IMAGENET_MEAN, IMAGENET_STD)):
        back = denormalize(normalize(x, mean, std), mean, std)
        torch.testing.assert_close(back, x, rtol=0, atol=atol)
        # And the other way round: normalize undoes denormalize.
        torch.testing.assert_close(normalize(denormalize(x, mean, std), mean, std), x, rtol=0, atol=atol * 50)


def test_denormalize_formula():
    z = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = z.numpy() * np.array(STD)[:, None, None] + np.array(MEAN)[:, None, None]
    np.testing.assert_allclose(denormalize(z, MEAN, STD).numpy(), expected, rtol=1e-15)


def test_zero_std_is_a_value_error_like_torchvision():
    x = torch.rand(3, 4, 4)
    for fn in (normalize, denormalize):
        with pytest.raises(ValueError, match="std"):
            fn(x, MEAN, (0.2, 0.0, 0.1))
    with pytest.raises(ValueError):
        F.normalize(x, list(MEAN), [0.2, 0.0, 0.1])
    with pytest.raises(ValueError, match="zero"):
        TransformConfig(mean=MEAN, std=(0.2, 0.0, 0.1))


def test_channel_count_mismatch_names_both_numbers():
    with pytest.raises(ValueError, match=r"4 channels.*3 values"):
        normalize(torch.rand(4, 2, 2), MEAN, STD)
    with pytest.raises(ValueError, match=r"1 channels.*3 values"):
        denormalize(torch.rand(1, 2, 2), MEAN, STD)


def test_config_takes_lists_and_checks_lengths():
    cfg = TransformConfig(mean=[0.1, 0.2, 0.3], std=[1, 1, 1])
    assert cfg.mean == (0.1, 0.2, 0.3) and hash(cfg) == hash(TransformConfig(mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="three"):
        TransformConfig(mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ValueError, match="degrees"):
        TransformConfig(rotation=-5)


def _image(size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(4)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


AUGMENT = TransformConfig(
    image_size=32, random_crop=True, hflip=True, rotation=30, color_jitter=0.4, mean=MEAN, std=STD
)


def test_previews_are_deterministic_under_a_seed_and_leave_global_rng_alone():
    img = _image()
    state = torch.get_rng_state()
    a = augmented_previews(img, AUGMENT, 6, seed=7)
    b = augmented_previews(img, AUGMENT, 6, seed=7)
    c = augmented_previews(img, AUGMENT, 6, seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(a) == 6 and all(t.shape == (3, 32, 32) and t.dtype == torch.float32 for t in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    assert len({t.sum().item() for t in a}) > 1  # the versions differ from each other

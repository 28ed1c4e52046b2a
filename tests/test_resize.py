"""The one resize against torchvision's v2.Resize, byte for byte, and its users: engine, stats, preview."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from lib.pixels.resize import resize
from lib.pixels.stats import StatsConfig, channel_stats, decoded_stats
from lib.pixels.transforms import TransformConfig, to_uint8_tensor
from lib.training.batches import dataset_mean_std, decode_images, decode_one


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize(("w", "h", "size"), [(40, 30, 16), (17, 23, 32), (64, 64, 8), (9, 9, 9), (5, 100, 24)])
def test_resize_is_torchvisions_to_the_byte(w, h, size):
    img = _noise(w, h, seed=w * h)
    expected = v2.PILToTensor()(v2.Resize((size, size), antialias=True)(img))  # (3, S, S) uint8
    got = to_uint8_tensor(resize(img, size))
    assert got.dtype == torch.uint8 and torch.equal(got, expected)


def test_none_keeps_the_image():
    img = _noise(7, 5)
    assert resize(img, None) is img


@pytest.fixture()
def files(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(40, 30), (17, 23), (32, 32), (64, 48)]):
        p = tmp_path / f"{i}.png"
        _noise(w, h, seed=i).save(p)
        paths.append(str(p))
    return paths


def test_engine_preview_and_stats_see_the_same_pixels(files):
    ref = torch.stack(
        [v2.PILToTensor()(v2.Resize((16, 16), antialias=True)(Image.open(p).convert("RGB"))) for p in files]
    )
    assert torch.equal(decode_images(files, 16), ref)
    assert all(torch.equal(decode_one(p, 16), r) for p, r in zip(files, ref, strict=True))
    preview = TransformConfig(image_size=16).build()
    scale = v2.ToDtype(torch.float32, scale=True)
    assert all(torch.equal(preview(Image.open(p).convert("RGB")), scale(r)) for p, r in zip(files, ref, strict=True))
    # Statistics of the files (resized by the workers) equal those of the tensor the engine decoded.
    from_files = channel_stats(files, StatsConfig(size=16, executor="serial"))
    from_tensor = decoded_stats(ref.numpy())
    assert from_files.mean == from_tensor.mean and from_files.std == from_tensor.std


def test_engine_dataset_normalization_is_the_exact_histogram_statistics(files):
    """Against numpy's float64 mean/std of every pixel, both when decoded in memory and when streamed."""
    decoded = decode_images(files, 16)
    pixels = decoded.permute(1, 0, 2, 3).reshape(3, -1).double().numpy() / 255.0  # (3, N*S*S)
    for mean, std in (dataset_mean_std(files, 16, decoded=decoded), dataset_mean_std(files, 16)):
        np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-14)
        np.testing.assert_allclose(std, pixels.std(axis=1), rtol=1e-12)


def test_decoded_stats_refuses_what_is_not_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        decoded_stats(np.zeros((2, 3, 4, 4), dtype=np.float32))

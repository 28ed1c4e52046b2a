"""channel_stats against a numpy float64 reference and torchvision's own pipeline."""

import math
import sys
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib.data.images import load_rgb
from lib.pixels.stats import StatsConfig, channel_stats
from lib.pixels.transforms import TransformConfig


def _write_mixed(folder, n=24, seed=0) -> list[str]:
    """Images of mixed sizes and modes; brightness varies a lot between images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = int(rng.integers(3, 70)), int(rng.integers(3, 70))
        level = rng.uniform(0, 200)
        rgb = np.clip(level + rng.normal(0, 20 + 10 * (i % 4), (h, w, 3)), 0, 255).astype(np.uint8)
        mode = ("RGB", "L", "RGBA", "P")[i % 4]
        if mode == "L":
            img = Image.fromarray(rgb[..., 0], "L")
        elif mode == "RGBA":
            alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
            img = Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
        elif mode == "P":
            img = Image.fromarray(rgb, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
        else:
            img = Image.fromarray(rgb, "RGB")
        path = folder / f"img_{i:03d}_{mode}.png"
        img.save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> list[str]:
    return _write_mixed(tmp_path_factory.mktemp("mixed") / "one_class")  # an ImageFolder of one class


def _pixels(paths) -> np.ndarray:
    """Every pixel of every image as (N, 3) float64 in [0, 1], decoded the same way (load_rgb)."""
    return np.concatenate([np.asarray(load_rgb(p), dtype=np.float64).reshape(-1, 3) / 255.0 for p in paths])


def _torchvision_pixels(root, size: int) -> np.ndarray:
    """Every pixel as (N, 3) float64 through torchvision's own ImageFolder and v2 pipeline: Resize on the PIL
    image, ToImage, ToDtype. Images are decoded by load_rgb (alpha over white, which torchvision's loader
    does not do)."""
    from torchvision import datasets
    from torchvision.transforms import v2

    pipeline = v2.Compose(
        [v2.Resize((size, size), antialias=True), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    )
    folder = datasets.ImageFolder(str(root), transform=pipeline, loader=load_rgb)
    return np.concatenate([x.double().reshape(3, -1).T.numpy() for x, _ in folder])


@pytest.mark.parametrize("executor", ["serial", "thread", "process"])
def test_matches_numpy_float64_reference(mixed, executor):
    px = _pixels(mixed)
    s = channel_stats(mixed, StatsConfig(executor=executor, workers=2, chunk_images=5))
    np.testing.assert_allclose(s.mean, px.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.std, px.std(axis=0, ddof=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.min, px.min(axis=0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.max, px.max(axis=0), rtol=0, atol=1e-7)
    assert (s.num_images, s.num_pixels) == (len(mixed), len(px))
    assert (s.nan_count, s.inf_count, s.failed) == (0, 0, [])


def test_mean_of_per_image_stds_is_a_different_answer(mixed):
    s = channel_stats(mixed, StatsConfig(executor="serial"))
    per_image = [np.asarray(load_rgb(p), dtype=np.float64).reshape(-1, 3) / 255.0 for p in mixed]
    recipe_std = np.mean([a.std(axis=0) for a in per_image], axis=0)
    recipe_mean = np.mean([a.mean(axis=0) for a in per_image], axis=0)
    # Brightness varies between images, so the per-image recipe misses the between-image spread.
    assert np.all(np.abs(np.array(s.std) - recipe_std) > 0.05)
    assert np.all(np.abs(np.array(s.mean) - recipe_mean) > 1e-3)  # unequal sizes weigh differently


def test_resize_matches_torchvision_pipeline(mixed):
    px = _torchvision_pixels(Path(mixed[0]).parents[1], size=16)
    s = channel_stats(mixed, StatsConfig(size=16, executor="serial"))
    # The reference went through float32 (ToDtype); the statistics use k / 255 in float64.
    np.testing.assert_allclose(s.mean, px.mean(axis=0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.std, px.std(axis=0), rtol=0, atol=1e-7)
    assert s.num_pixels == len(mixed) * 16 * 16 == len(px)


def test_normalized_with_own_stats_gives_zero_mean_unit_std(mixed):
    s = channel_stats(mixed, StatsConfig(executor="serial"))
    z = channel_stats(mixed, StatsConfig(mean=tuple(s.mean), std=tuple(s.std), executor="serial"))
    np.testing.assert_allclose(z.mean, 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std, 1.0, atol=1e-6)


def test_nan_and_inf_counted_after_the_pipeline(mixed):
    # A std this small overflows float32 for every pixel that is not exactly the mean; a NaN mean
    # makes a whole channel NaN.
    mean, std = (0.0, math.nan, 0.5), (1e-45, 1.0, 1.0)
    pipeline = TransformConfig(image_size=None, mean=mean, std=std).build()
    outs = [pipeline(load_rgb(p)).double().reshape(3, -1) for p in mixed]  # (3, H*W) each
    ref = torch.cat(outs, dim=1)
    s = channel_stats(mixed, StatsConfig(mean=mean, std=std, executor="serial"))
    assert s.nan_count == int(torch.isnan(ref).sum()) == ref.shape[1]
    assert s.inf_count == int(torch.isinf(ref).sum()) > 0
    finite_red = ref[0][torch.isfinite(ref[0])]
    assert s.mean[0] == pytest.approx(float(finite_red.mean()), abs=1e-12)
    assert math.isnan(s.mean[1])
    assert s.mean[2] == pytest.approx(float(ref[2].mean()), abs=1e-9)


def test_unusable_images_are_reported_not_counted(mixed, tmp_path):
    bad = tmp_path / "truncated.png"
    bad.write_bytes(open(mixed[0], "rb").read()[:60])
    s = channel_stats([*mixed, str(bad)], StatsConfig(executor="serial"))
    assert s.num_images == len(mixed) and [p for p, _ in s.failed] == [str(bad)]
    with pytest.raises(ValueError, match="could be decoded"):
        channel_stats([str(bad)], StatsConfig(executor="serial"))
    with pytest.raises(ValueError, match="no images"):
        channel_stats([], StatsConfig())


def test_progress_reports_every_image(mixed):
    calls = []
    channel_stats(
        mixed, StatsConfig(executor="thread", workers=2, chunk_images=4), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, len(mixed)) and calls[-1] == (len(mixed), len(mixed))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError, match="between 4 and 1024"):
        StatsConfig(size=2)
    with pytest.raises(ValueError, match="executor"):
        StatsConfig(executor="gpu")


def _peak_bytes(paths, config) -> int:
    tracemalloc.start()
    try:
        channel_stats(paths, config)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_on_many_small_images(tmp_path):
    files = _write_mixed(tmp_path, n=50, seed=1)
    small, large = files * 4, files * 40  # 200 and 2,000 images; ~10 MB decoded in all for the large
    config = StatsConfig(executor="serial", chunk_bytes=64 * 1024)
    data_bytes = sum(np.asarray(load_rgb(p)).nbytes for p in files) * 40
    peak_small, peak_large = _peak_bytes(small, config), _peak_bytes(large, config)
    # Flat: the extra peak for 10x the images is a small fraction of their decoded size.
    assert peak_large - peak_small < 0.05 * data_bytes, (peak_small, peak_large, data_bytes)


class _Stop(Exception):
    pass


def test_a_stopped_run_leaves_the_shared_pool_usable(mixed):
    # In the app a rerun interrupts the progress callback; the next computation must still work.
    def stop(done, total):
        if done:
            raise _Stop

    config = StatsConfig(executor="process", workers=2, chunk_images=2)
    with pytest.raises(_Stop):
        channel_stats(mixed, config, progress=stop)
    assert channel_stats(mixed, config).to_dict() == channel_stats(mixed, StatsConfig(executor="serial")).to_dict()


def test_workers_do_not_run_the_callers_main_script(mixed, tmp_path, monkeypatch):
    # Inside Streamlit, __main__ is the app script; a worker that re-imported it would run the app.
    marker = tmp_path / "main_ran"
    script = tmp_path / "app_script.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    # Three workers: a pool of its own, started now, with the fake __main__ in place.
    s = channel_stats(mixed, StatsConfig(executor="process", workers=3, chunk_images=3))
    assert s.num_images == len(mixed)
    assert not marker.exists()
    assert sys.modules["__main__"] is fake_main

"""One augmentation pipeline: each batched step against torchvision, and the Channels preview against the
tensor the engine feeds the model."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lib.data.index import build_index
from lib.pixels.transforms import (
    Augmentation,
    TransformConfig,
    augment_batch,
    augmentation_generator,
    augmented_previews,
    model_input,
)
from lib.training.config import TrainConfig, config_from_args
from lib.training.engine import fit


def _batch(b=16, size=8, seed=0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_flip_and_crop_are_a_flip_and_a_reflect_padded_crop_of_each_image():
    x = _batch()
    out = augment_batch(x, Augmentation(random_crop=True, hflip=True), torch.Generator().manual_seed(0)).numpy()
    chosen = set()
    for i in range(16):
        options = {}
        for flip in (False, True):
            img = x[i].numpy()[:, :, ::-1] if flip else x[i].numpy()
            padded = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")  # pad 8 // 8 = 1
            for dy in range(3):
                for dx in range(3):
                    options[(flip, dy, dx)] = padded[:, dy : dy + 8, dx : dx + 8]
        match = [k for k, v in options.items() if np.array_equal(v, out[i])]
        assert match, f"image {i} is not a flip/crop of its input"
        chosen.add(match[0])
    assert len(chosen) > 3  # the draws differ between images


def test_rotation_is_torchvisions_rotate_with_each_images_own_angle():
    x = _batch(b=6, size=12)
    aug = Augmentation(rotation=40)
    out = augment_batch(x, aug, torch.Generator().manual_seed(3))
    angles = (torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1) * 40
    assert angles.abs().max() > 5 and len(set(angles.tolist())) == 6
    for i in range(6):
        ref = TF.rotate(x[i], float(angles[i]), interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-5)


def test_rotation_of_a_wide_image_is_a_rotation_in_pixels():
    x = torch.rand(1, 3, 8, 20, generator=torch.Generator().manual_seed(5))
    out = augment_batch(x, Augmentation(rotation=30), torch.Generator().manual_seed(1))
    angle = float((torch.rand(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1) * 30)
    ref = TF.rotate(x[0], angle, interpolation=InterpolationMode.BILINEAR)
    torch.testing.assert_close(out[0], ref, rtol=0, atol=1e-5)


def test_colour_jitter_is_torchvisions_brightness_contrast_saturation_per_image():
    x = _batch(b=5, size=6, seed=2)
    out = augment_batch(x, Augmentation(color_jitter=0.5), torch.Generator().manual_seed(4))
    factors = 1 + (torch.rand(5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1) * 0.5
    assert ((factors >= 0.5) & (factors <= 1.5)).all()
    for i in range(5):
        b, c, s = (float(f) for f in factors[i].float())
        ref = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], b), c), s)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=1e-6)


def test_model_input_scales_like_todtype_and_normalizes_like_torchvision():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as published
    ref = TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))
    assert torch.equal(model_input(images, mean_std=(mean, std)), ref)
    with pytest.raises(ValueError, match="generator"):
        model_input(images, augmentation=Augmentation(hflip=True))


def test_the_preview_is_the_tensor_the_engine_feeds_the_model(tmp_path):
    """Same image, settings and seed: the preview equals the first training batch the model receives.

    Every training image is the same picture, so the first batch (batch size = preview count) is n copies
    of it whatever the shuffle; a model that records its input catches what the engine feeds it.
    """
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            picture.save(tmp_path / c / f"{i}.png")
    index = build_index(str(tmp_path))
    config = TrainConfig(
        model="linear", image_size=16, epochs=1, batch_size=8, random_crop=True, hflip=True, rotation=25,
        color_jitter=0.3, normalization="imagenet", val_split=0.2, seed=7,
    )  # fmt: skip
    seen = []

    class Recorder(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.linear = nn.Linear(3 * 16 * 16, 2)

        def forward(self, x):
            seen.append((self.training, x.detach().clone()))
            return self.linear(x.flatten(1))

    result = fit(config, index.samples, index.classes, model_fn=lambda *a, **k: Recorder())
    assert result.status == "completed", result.message
    fed = next(x for training, x in seen if training)  # (8, 3, 16, 16)
    mean, std = result.mean_std
    preview = TransformConfig(16, True, True, 25.0, 0.3, mean=mean, std=std)
    got = torch.stack(augmented_previews(picture, preview, 8, seed=7))
    assert fed.shape == got.shape == (8, 3, 16, 16)
    assert torch.equal(got, fed.cpu())
    assert len({t.sum().item() for t in got}) == 8  # eight different draws, not eight copies


def test_preview_without_augmentation_is_the_evaluation_output():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB")
    plain = TransformConfig(image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    for t in augmented_previews(img, plain, 2, seed=0):
        assert torch.equal(t, plain.build()(img))


def test_generator_is_the_runs_seed_offset():
    a, b = augmentation_generator(3), torch.Generator().manual_seed(5)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_old_runs_with_augment_true_read_as_crop_and_flip():
    old = {**TrainConfig().to_dict(), "augment": True}
    for key in ("random_crop", "hflip", "rotation", "color_jitter"):
        old.pop(key)
    config = TrainConfig.from_dict(old)
    assert config.augmentation() == Augmentation(random_crop=True, hflip=True)
    assert TrainConfig.from_dict({"augment": False}).augmentation() == Augmentation()
    assert not TrainConfig.from_dict({"augment": False}).augmentation().enabled
    # A new run that also carries the old key keeps its own fields.
    assert TrainConfig.from_dict({"augment": True, "rotation": 5.0}).augmentation() == Augmentation(rotation=5.0)


@pytest.mark.parametrize(
    ("bad", "words"), [(dict(rotation=-1.0), "degrees"), (dict(color_jitter=1.5), "between 0 and 1")]
)
def test_bad_augmentation_is_one_sentence(bad, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**bad)
    with pytest.raises(ValueError, match=words):
        TransformConfig(**bad)


def test_cli_flags_set_the_same_fields():
    import argparse

    from lib.commands import options

    parser = argparse.ArgumentParser()
    options.train(parser.add_subparsers().add_parser("train"))
    args = parser.parse_args(["train", "x", "--augment", "--rotation", "12", "--color-jitter", "0.25"])
    assert config_from_args(args).augmentation() == Augmentation(True, True, 12.0, 0.25)
    args = parser.parse_args(["train", "x", "--hflip"])
    assert config_from_args(args).augmentation() == Augmentation(hflip=True)

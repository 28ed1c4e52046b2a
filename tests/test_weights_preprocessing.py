"""A run with pretrained weights preprocesses as the weights' own `transforms()` do (shorter side to their resize
size, centre crop, their mean/std), records them and the weights' own name, and can be told to squash instead.
Every reference is torchvision's: `weights.transforms()`, `Resize`/`CenterCrop`, `v2.Resize`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from lib.__main__ import build_parser
from lib.commands.plumbing import run_config
from lib.pixels.resize import Resizing, resize
from lib.pixels.transforms import model_input, to_uint8_tensor
from lib.training.batches import decode_images, decode_one
from lib.training.config import TrainConfig
from lib.training.models import weights_enum, weights_mean_std, with_weights_preprocessing
from tests.test_models import seed_weights


def _picture(path, w: int, h: int, seed: int = 0):
    """A smooth picture with noise: resampling filters differ on it (flat noise would hide a wrong filter less)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], axis=-1)
    arr = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


def _run_config(model: str, weights: str, **values) -> TrainConfig:
    size = weights_enum(model, weights).transforms().crop_size[0]
    values = dict(model=model, weights=weights, resize="weights", normalization="weights", image_size=size, **values)
    return with_weights_preprocessing(TrainConfig(**values))


@pytest.mark.parametrize(
    ("model", "weights"),
    [
        ("resnet18", "IMAGENET1K_V1"),  # 256 -> 224, bilinear
        ("resnet50", "IMAGENET1K_V2"),  # 232 -> 224
        ("efficientnet_b0", "IMAGENET1K_V1"),  # 256 -> 224, bicubic
        ("efficientnet_b3", "IMAGENET1K_V1"),  # 320 -> 300, bicubic
    ],
)
@pytest.mark.parametrize(("w", "h"), [(300, 200), (181, 377)], ids=["landscape", "portrait"])
def test_the_decoded_tensor_is_the_weights_own_transforms(tmp_path, model, weights, w, h):
    path = _picture(tmp_path / "img.png", w, h, seed=w)
    config = _run_config(model, weights)
    reference = weights_enum(model, weights).transforms()(Image.open(path).convert("RGB"))  # (3, C, C) float
    decoded = decode_images([path], config.resizing())  # (1, 3, C, C) uint8, the engine's decode
    got = model_input(decoded, mean_std=weights_mean_std(model, weights))[0]
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-5)
    assert torch.equal(decode_one(path, config.resizing()), decoded[0])


def test_another_image_size_scales_the_resize_as_the_crop():
    """resnet18's 256 -> 224 at 112 px: torchvision's Resize(128) then CenterCrop(112), to the byte."""
    config = with_weights_preprocessing(
        TrainConfig(model="resnet18", pretrained=True, resize="weights", normalization="weights", image_size=112)
    )
    assert config.resizing() == Resizing(112, 128, "bilinear")
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 230, 3), dtype=np.uint8))
    from torchvision import transforms as T

    expected = T.PILToTensor()(T.CenterCrop(112)(T.Resize(128, antialias=True)(img)))
    assert torch.equal(to_uint8_tensor(resize(img, config.resizing())), expected)


def test_square_is_the_override_and_squashes_as_before(tmp_path):
    path = _picture(tmp_path / "img.png", 300, 200)
    config = with_weights_preprocessing(TrainConfig(model="resnet18", pretrained=True, resize="square", image_size=64))
    assert (config.resize, config.resize_size, config.crop_size) == ("square", None, None)
    expected = v2.PILToTensor()(v2.Resize((64, 64), antialias=True)(Image.open(path).convert("RGB")))
    assert torch.equal(decode_one(path, config.resizing()), expected)


def test_resize_weights_needs_weights_in_one_sentence():
    with pytest.raises(ValueError, match="Resize 'weights' needs pretrained weights; choose square"):
        TrainConfig(model="resnet18", resize="weights")


def test_the_cli_records_the_weights_own_name_and_preprocessing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    seed_weights("resnet50", "IMAGENET1K_V2")
    args = build_parser().parse_args(["train", str(tmp_path), "--model", "resnet50", "--pretrained"])
    config = run_config(args)
    assert config.weights == "IMAGENET1K_V2" == weights_enum("resnet50", "DEFAULT").name
    assert (config.image_size, config.resize, config.resize_size, config.crop_size) == (224, "weights", 232, 224)
    assert (config.interpolation, config.normalization) == ("bilinear", "weights")
    args = build_parser().parse_args(
        ["train", str(tmp_path), "--model", "resnet50", "--weights", "IMAGENET1K_V2", "--resize", "square"]
    )
    config = run_config(args)
    assert (config.weights, config.resize, config.resize_size) == ("IMAGENET1K_V2", "square", None)
    assert config.resizing() == Resizing(224)


def test_default_is_recorded_as_the_weights_it_stands_for():
    config = with_weights_preprocessing(TrainConfig(model="mobilenet_v2", pretrained=True, resize="weights"))
    assert (config.weights, config.resize_size, config.crop_size) == ("IMAGENET1K_V2", 232, 224)
    assert with_weights_preprocessing(TrainConfig(model="cnn")) == TrainConfig(model="cnn")


def test_a_trained_run_is_decoded_downstream_as_it_was_trained(tmp_path, monkeypatch, capsys):
    """A CLI run on non-square images at 32 px with the weights' resize: Evaluate's predictions, Explain's
    validation images and uploads all go through the run's own Resizing (shorter side 37, centre 32)."""
    import json

    from lib.__main__ import main
    from lib.app import cache
    from lib.evaluation import predictions
    from lib.training.checkpoint import load_model
    from tests.helpers import write_imagefolder

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    seed_weights("mobilenet_v2", "IMAGENET1K_V1")
    root = write_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=4, size=(60, 40))
    args = ["train", str(root), "--model", "mobilenet_v2", "--weights", "IMAGENET1K_V1", "--finetune", "head"]
    assert main([*args, "--image-size", "32", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    loaded = load_model(run_id, runs_dir=tmp_path / "runs")
    assert loaded.config.resizing() == Resizing(32, 37, "bilinear")  # round(256 * 32 / 224), then the crop
    path = loaded.val_samples()[0][0]
    from torchvision import transforms as T

    expected = T.PILToTensor()(T.CenterCrop(32)(T.Resize(37)(Image.open(path).convert("RGB"))))  # (3, 32, 32)
    rel = loaded.val_paths[0]
    assert np.array_equal(cache.run_image(run_id, rel, 32), expected.permute(1, 2, 0).numpy())
    with open(path, "rb") as f:
        assert np.array_equal(cache.upload_image(f.read(), run_id), expected.permute(1, 2, 0).numpy())
    # Evaluate decodes the split as torchvision's own Resize + CenterCrop does (what its model then sees).
    seen = []
    monkeypatch.setattr(predictions, "decode_images", lambda *a, **k: seen.append(decode_images(*a, **k)) or seen[-1])
    stored = predictions.predict(loaded)
    reference = T.Compose([T.Resize(37), T.CenterCrop(32), T.PILToTensor()])
    batch = torch.stack([reference(Image.open(p).convert("RGB")) for p, _ in loaded.val_samples()])
    assert not stored.bad and torch.equal(torch.cat(seen), batch)

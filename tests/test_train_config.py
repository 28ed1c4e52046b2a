"""TrainConfig validates once with one-sentence errors and round-trips through a dict; models build offline."""

import dataclasses

import pytest
import torch

from lib.training.config import MODELS, TrainConfig
from lib.training.models import build_model


def test_round_trip_through_dict_ignores_unknown_keys():
    config = TrainConfig(model="mlp", lr=0.05, optimizer="sgd", max_batches=3, name="x")
    assert TrainConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(model="vit"), "choose one of"),
        (dict(epochs=0), "at least 1"),
        (dict(lr=0.0), "positive"),
        (dict(lr=float("nan")), "positive"),
        (dict(val_split=1.0), "between 0 and 1"),
        (dict(optimizer="lbfgs"), "choose one of"),
        (dict(image_size=2), "out of range"),
        (dict(max_batches=0), "at least 1"),
        (dict(batch_size=True), "whole number"),
        (dict(model="cnn", pretrained=True), "only for resnet18"),
    ],
)
def test_bad_values_raise_one_sentence(bad, words):
    with pytest.raises(ValueError, match=words) as e:
        TrainConfig(**bad)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_replace_validates_again():
    with pytest.raises(ValueError):
        dataclasses.replace(TrainConfig(), schedule="warp")


@pytest.mark.parametrize("name", MODELS)
def test_every_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_pretrained_without_cached_weights_says_so_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="not in the local torch hub cache"):
        build_model("resnet18", 4, 64, pretrained=True)
    assert not any(tmp_path.rglob("*.pth"))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_model("cnn", 1, 32)

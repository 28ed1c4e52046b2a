"""TrainConfig validates once with one-sentence errors and round-trips through a dict; models build offline."""

import argparse
import dataclasses

import pytest
import torch

from lib.training.config import MODELS, PAGE_FIELDS, TrainConfig, add_config_options, config_from_args
from lib.training.models import build_model


def test_round_trip_through_dict_ignores_unknown_keys():
    config = TrainConfig(model="mlp", lr=0.05, optimizer="sgd", max_batches=3, name="x")
    assert TrainConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(model="vit"), "list them with"),
        (dict(epochs=0), "at least 1"),
        (dict(lr=0.0), "positive"),
        (dict(lr=float("nan")), "positive"),
        (dict(val_split=1.0), "between 0 and 1"),
        (dict(optimizer="lbfgs"), "choose one of"),
        (dict(image_size=2), "out of range"),
        (dict(max_batches=0), "at least 1"),
        (dict(batch_size=True), "whole number"),
        (dict(model="cnn", pretrained=True), "only for torchvision models"),
        (dict(model="resnet18", finetune="head"), "needs pretrained weights"),
        (dict(model="resnet18", normalization="weights"), "needs pretrained weights"),
    ],
)
def test_bad_values_raise_one_sentence(bad, words):
    with pytest.raises(ValueError, match=words) as e:
        TrainConfig(**bad)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def parse(*args: str, exclude=()) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_options(parser, exclude=exclude)
    return parser.parse_args(list(args))


def test_options_default_to_the_dataclass_and_set_every_field():
    assert config_from_args(parse()) == TrainConfig()
    assert config_from_args(parse(), world_size=3) == TrainConfig(world_size=3)
    chosen = TrainConfig(
        model="resnet18", epochs=7, batch_size=9, lr=0.5, optimizer="sgd", weight_decay=0.01, schedule="cosine",
        image_size=48, random_crop=True, hflip=True, rotation=12.5, color_jitter=0.25, normalization="none",
        val_split=0.3, seed=4, device="cpu", max_batches=2, pretrained=True, name="x", resize="weights",
        weights="IMAGENET1K_V1",
    )  # fmt: skip
    args = ["--model", "resnet18", "--epochs", "7", "--batch-size", "9", "--lr", "0.5", "--optimizer", "sgd"]
    args += ["--weight-decay", "0.01", "--schedule", "cosine", "--image-size", "48", "--random-crop", "--hflip"]
    args += ["--rotation", "12.5", "--color-jitter", "0.25", "--normalization", "none", "--val-split", "0.3"]
    args += ["--seed", "4", "--device", "cpu", "--max-batches", "2", "--pretrained", "--name", "x"]
    args += ["--resize", "weights", "--weights", "IMAGENET1K_V1"]
    assert config_from_args(parse(*args)) == chosen
    # Set by the run, not chosen: the processes, a model file's hash, the weights' own preprocessing.
    recorded = {"world_size", "model_sha256", "resize_size", "crop_size", "interpolation"}
    assert {f.name for f in dataclasses.fields(TrainConfig)} - recorded == set(vars(parse())) - {"augment"}


def test_an_excluded_option_keeps_its_default_and_bad_choices_are_refused():
    assert config_from_args(parse(exclude=("name",))).name == ""
    with pytest.raises(SystemExit):
        parse("--name", "x", exclude=("name",))
    with pytest.raises(SystemExit):
        parse("--optimizer", "lbfgs")


def test_the_train_page_offers_the_recipe_not_the_machine():
    assert PAGE_FIELDS[:3] == ("model", "epochs", "batch_size") and PAGE_FIELDS[-1] == "name"
    recorded = {"resize_size", "crop_size", "interpolation"}
    assert {"device", "world_size", "model_sha256", *recorded}.isdisjoint(PAGE_FIELDS) and len(PAGE_FIELDS) == 22
    assert {"weights", "resize"} < set(PAGE_FIELDS)


def test_replace_validates_again():
    with pytest.raises(ValueError):
        dataclasses.replace(TrainConfig(), schedule="warp")


@pytest.mark.parametrize("name", [*MODELS[:3], "resnet18"])  # every torchvision one: tests/test_models.py
def test_every_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_model("cnn", 1, 32)

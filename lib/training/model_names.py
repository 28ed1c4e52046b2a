"""The names of torchvision's classifiers, torch-free so pages and TrainConfig can check a name, and the
torch-free side of a model file (FILE.py:build): where it is, its SHA-256, and that deployed mode refuses it.

tests/test_models.py checks the list against torchvision.models.list_models(module=torchvision.models).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

TORCHVISION_MODELS = (
    "alexnet",
    "convnext_base",
    "convnext_large",
    "convnext_small",
    "convnext_tiny",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_l",
    "efficientnet_v2_m",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_x_16gf",
    "regnet_x_1_6gf",
    "regnet_x_32gf",
    "regnet_x_3_2gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_8gf",
    "regnet_y_128gf",
    "regnet_y_16gf",
    "regnet_y_1_6gf",
    "regnet_y_32gf",
    "regnet_y_3_2gf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_8gf",
    "resnet101",
    "resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    "squeezenet1_0",
    "squeezenet1_1",
    "swin_b",
    "swin_s",
    "swin_t",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "vit_b_16",
    "vit_b_32",
    "vit_h_14",
    "vit_l_16",
    "vit_l_32",
    "wide_resnet101_2",
    "wide_resnet50_2",
)


def is_model_file(model: str) -> bool:
    """Whether a model names a file and a function in it (`path/to/file.py:build`)."""
    path, sep, function = model.rpartition(":")
    return bool(sep) and path.endswith(".py") and function.isidentifier()


def refuse_when_deployed() -> None:
    """Raises ValueError in deployed mode: a model file runs its code on the server."""
    from lib.settings import load_settings

    if load_settings().deployed:
        raise ValueError("Model files are not accepted in deployed mode; choose a model by name.")


def split_model_file(spec: str) -> tuple[Path, str]:
    path, _, function = spec.rpartition(":")
    return Path(path).expanduser(), function


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def with_model_file_hash(config):
    """config with its model file's SHA-256 recorded (unchanged for a model by name).

    Raises:
        ValueError: in deployed mode, or when the file is missing.
    """
    if not is_model_file(config.model):
        return config
    refuse_when_deployed()
    path, _ = split_model_file(config.model)
    if not path.is_file():
        raise ValueError(f"Model file {path} does not exist; check the path before the colon.")
    return replace(
        config, model=f"{path.resolve()}:{split_model_file(config.model)[1]}", model_sha256=file_sha256(path)
    )

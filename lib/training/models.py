"""Image classifiers by name. Nothing here downloads: pretrained weights are used only from the local cache."""

from __future__ import annotations

import os

import torch
from torch import nn

from lib.training.config import MODELS  # the one list of names, importable without torch (pages)


def build_model(name: str, num_classes: int, image_size: int, *, pretrained: bool = False) -> nn.Module:
    """A fresh model taking (B, 3, image_size, image_size) floats to (B, num_classes) logits.

    Raises:
        ValueError: for an unknown name, fewer than 2 classes, or pretrained weights that are not cached.
    """
    if num_classes < 2:
        raise ValueError(f"Training needs at least 2 classes, got {num_classes}; add another class folder.")
    if pretrained and name != "resnet18":
        raise ValueError(f"Pretrained weights exist only for resnet18, not {name}; untick pretrained.")
    features = 3 * image_size * image_size
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, num_classes))
    if name == "cnn":
        return small_cnn(num_classes)
    if name == "resnet18":
        return resnet18(num_classes, pretrained)
    raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")


def small_cnn(num_classes: int) -> nn.Module:
    """Three conv blocks and global average pooling: a sensible default for 32-64 px images."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
        *block(32, 64), nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
        *block(64, 128), nn.AdaptiveAvgPool2d(1),  # (B, 128, 1, 1)
        nn.Flatten(), nn.Linear(128, num_classes),
    )  # fmt: skip


def resnet18(num_classes: int, pretrained: bool) -> nn.Module:
    """torchvision's ResNet-18 with a num_classes head; ImageNet weights only from the local hub cache."""
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as tv_resnet18

    if not pretrained:
        return tv_resnet18(weights=None, num_classes=num_classes)
    path = cached_weights_path(ResNet18_Weights.IMAGENET1K_V1.url)
    if not os.path.exists(path):
        raise ValueError(
            f"Pretrained resnet18 weights are not in the local torch hub cache ({path}); "
            "train from scratch, or copy the weights file there first (nothing is downloaded)."
        )
    model = tv_resnet18(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def cached_weights_path(url: str) -> str:
    """Where torch.hub would keep the file for url (it is never fetched here)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))

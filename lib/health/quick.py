"""The label check's quick models that need torch: a linear probe on a pretrained backbone, else the small cnn.

`probe`: the first backbone of PROBE_BACKBONES whose weights file is in torch hub's cache
($TORCH_HOME/hub/checkpoints; never downloaded here) runs frozen, in eval mode, over every image once
(normalized as its weights were trained); its features at the head's input are the features of the
linear probe (logistic regression, fitted per fold in lib.health.labels) and of the outlier score. The
backbone never sees a label, so computing the features once for all folds keeps them out of sample.

`cnn`: the project's small cnn (lib.training.models.small_cnn) trained from scratch on K-1 folds for
CNN_EPOCHS epochs and run on the held-out fold: its softmax are that fold's out-of-sample probabilities,
its penultimate features (the pooled 128 before the last layer) that fold's features for the outlier score.
Each fold's features live in their own model's space, so outliers are scored within a fold (`groups`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from lib.health.labels import Progress, stratified_folds

PROBE_BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "efficientnet_b0")  # first at hand wins
PROBE_SIZE = 64  # images are resized to this side for the backbone: ImageNet shapes survive, the cost stays low
SMALL_SIZE = 16  # the cnn's side, and the pixel models'
CNN_EPOCHS, CNN_BATCH, CNN_LR = 6, 64, 3e-3
MIN_STEPS = 30  # small datasets train more epochs: a handful of steps teaches the cnn nothing


def probe_backbone() -> str | None:
    """The first of PROBE_BACKBONES whose DEFAULT weights file is in torch hub's cache, else None."""
    from lib.training.models import weights_enum, weights_file

    for name in PROBE_BACKBONES:
        if weights_file(weights_enum(name, "DEFAULT")).is_file():
            return name
    return None


def backbone_features(images: np.ndarray, name: str, progress: Progress | None = None, batch: int = 128):
    """uint8 (N, S, S, 3) -> float32 (N, D): the frozen backbone `name` (DEFAULT weights from the hub cache)
    at its head's input."""
    import torch

    from lib.training.finetune import head_features
    from lib.training.models import build_model, head_module, weights_enum

    meta = weights_enum(name, "DEFAULT").transforms()
    model = build_model(name, 2, images.shape[1], weights="DEFAULT")  # the head is replaced; only its input is used
    prepare = _normalizer(meta.mean, meta.std)
    done: list[int] = []

    def step(x, train):
        done.append(len(x))
        if progress:
            progress(sum(done), len(images))
        return prepare(x, train)

    with torch.random.fork_rng(), idle_threads():
        features = head_features(model, head_module(model, name), torch.from_numpy(images), step, batch)
    return features.flatten(1).numpy()


@contextmanager
def idle_threads() -> Iterator[None]:
    """Torch threads set to the cores the load leaves free (lib.training.device.idle_cores) while inside: on a
    busy machine a second thread makes each cnn step 5-10 times slower, not faster."""
    import torch

    from lib.training.device import idle_cores

    before = torch.get_num_threads()
    torch.set_num_threads(idle_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _normalizer(mean, std) -> Callable:
    """uint8 (B, S, S, 3) -> float (B, 3, S, S), (x / 255 - mean) / std per channel."""
    import torch

    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return lambda x, _train: (x.permute(0, 3, 1, 2).float() / 255.0 - m) / s


def cnn_out_of_sample(
    images: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities (N, K), penultimate features (N, 128), fold of each image (N,)), every row from the
    small cnn trained on the other folds.

    Raises:
        ValueError: when a class has too few images for the folds (lib.health.labels.stratified_folds).
    """
    import torch

    split = stratified_folds(labels, num_classes, folds)
    probs = np.zeros((len(labels), num_classes), dtype=np.float64)
    features = np.zeros((len(labels), 128), dtype=np.float32)
    fold_of = np.zeros(len(labels), dtype=np.int64)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    y = torch.from_numpy(labels)
    with torch.random.fork_rng(), idle_threads():  # seeded folds, without touching the server's generator
        for k, (train, held) in enumerate(split):
            torch.manual_seed(k)
            model = _train_cnn(x[train], y[train], num_classes)
            p, f = _predict(model, x[held])
            probs[held], features[held], fold_of[held] = p, f, k
            if progress:
                progress(k + 1, len(split))
    return probs, features, fold_of


def _train_cnn(x, y, num_classes: int):
    """The small cnn trained on (x, y) for CNN_EPOCHS epochs, or enough for MIN_STEPS steps (Adam, one cycle)."""
    import torch
    from torch import nn

    from lib.training.models import small_cnn

    model = small_cnn(num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=CNN_LR)
    per_epoch = -(-len(x) // CNN_BATCH)
    epochs = max(CNN_EPOCHS, -(-MIN_STEPS // per_epoch))
    steps = epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, CNN_LR, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(CNN_BATCH):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


def _predict(model, x, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(softmax (N, K), the last layer's input (N, 128)) of the model in eval mode."""
    import torch

    seen, out = [], []
    handle = model[-1].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                out.append(torch.softmax(model(x[i : i + batch]), dim=1))
    finally:
        handle.remove()
    return torch.cat(out).double().numpy(), torch.cat(seen).numpy()

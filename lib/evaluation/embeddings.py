"""How a model sees many images at once: the features at its head's input, projected to 2-D.

The features are the input of the model's classification head (a forward pre-hook on the module that
lib.training.models.head_module names: the one a run replaces, e.g. ResNet's `fc`, whose input is the
flattened average pool; `classifier[-1]`; ViT's `heads.head`; our small models' last layer with
parameters), collected in the same pass that gives the predictions. Both they and the raw pixels go through the same seeded PCA
(`torch.pca_lowrank`), so the two maps compare how separable the classes are after and before
training. Raw pixels are average-pooled to at most 32 px a side first, which keeps 10,000 images of
64 px at 120 MB instead of 490 MB and changes little at the scale PCA looks at.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lib.training.batches import batch_preparer, decode_images
from lib.training.checkpoint import LoadedRun
from lib.training.models import head_module

PIXEL_SIDE = 32  # raw pixels are pooled to at most this many pixels a side before PCA
THUMB_PX = 64  # px of a hover thumbnail: readable, ~2 KB each
Progress = Callable[[int, int], object]  # (done, total)


@dataclass
class Embedding:
    """N images as two maps: the model's features and the raw pixels, each projected to 2-D."""

    paths: list[str]  # as given (relative to the run's dataset root for a run's split)
    targets: np.ndarray  # (N,) int
    probabilities: np.ndarray  # (N, classes) float32
    model_xy: np.ndarray  # (N, 2) float32
    pixel_xy: np.ndarray  # (N, 2) float32
    model_variance: tuple[float, float]  # fraction of the total variance on each axis
    pixel_variance: tuple[float, float]
    thumbnails: list[str]  # data URLs (small JPEGs), for tooltips
    skipped: list[tuple[str, str]]  # (path, reason) of images that did not decode

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1)


def features_and_logits(model: nn.Module, head: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of `head` (a module of model), flattened (B, D), and the logits (B, classes), from one pass."""
    seen = []
    handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return seen[-1].flatten(1), logits


def pca_2d(data: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    """Rows of data (N, D) on their first two principal components, and each one's share of the variance.

    Seeded (the subspace iteration starts from a random projection); each axis's sign is fixed so its
    largest loading is positive, so the picture does not flip between calls.
    """
    data = data.detach().float().cpu()  # float32, as the features are: double precision only slowed the PCA
    centered = data - data.mean(0, keepdim=True)
    s, v = _top_components(centered, q=min(10, *data.shape), niter=10, seed=seed)
    v = v[:, :2] * torch.sign(v[:, :2].gather(0, v[:, :2].abs().argmax(0, keepdim=True)))
    if v.shape[1] < 2:  # one feature: the second axis is flat
        v = torch.cat([v, torch.zeros_like(v)], 1)
    total = float((centered**2).sum()) or 1.0
    shares = (s[:2] ** 2 / total).tolist() + [0.0]
    return (centered @ v).float().numpy(), (shares[0], shares[1])


def _top_components(x: torch.Tensor, q: int, niter: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values (q,) and right singular vectors (D, q) of x (N, D), by randomized subspace iteration
    (Halko et al. 2011, the method of torch.pca_lowrank).

    Every product is written as `basis.T @ x`, never `x.T @ basis`: with QR's column-major output the
    latter took 20x longer on CPU, and pca_lowrank spent 4 s of 4.4 on it for 10,000 x 3,072 pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(x @ torch.randn(x.shape[1], q, generator=generator, dtype=x.dtype))[0]
    for _ in range(niter):
        row_space = torch.linalg.qr((basis.T @ x).T)[0]  # (D, q)
        basis = torch.linalg.qr(x @ row_space)[0]  # (N, q)
    _, s, vh = torch.linalg.svd(basis.T @ x, full_matrices=False)
    return s, vh.T


def pooled_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) as float rows (B, 3 * s * s) in [0, 1], average-pooled to s <= PIXEL_SIDE."""
    x = images.float().div_(255)
    if x.shape[-1] > PIXEL_SIDE:
        x = F.adaptive_avg_pool2d(x, PIXEL_SIDE)
    return x.flatten(1)


def thumbnail_url(image: torch.Tensor, size: int = THUMB_PX) -> str:
    """One uint8 (3, S, S) image as a small JPEG data URL (what a Vega tooltip shows as a picture)."""
    img = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    if max(img.size) < size:  # a 16 px training image showed as a 16 px speck: enlarged, its pixels kept sharp
        scale = size / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.NEAREST)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def embed_tensors(
    model: nn.Module,
    images: torch.Tensor,
    mean_std: tuple | None,
    device: torch.device,
    *,
    name: str = "",
    batch_size: int = 256,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """One inference pass over uint8 images (N, 3, S, S) that keeps what the maps need.

    `name`: the model's name (config.model), which says where its head is (lib.training.models.head_path).
    Returns:
        the head's input (N, D) float32 on the CPU, softmax probabilities (N, classes) float32,
        and the pooled raw pixels (N, 3 * s * s).
    """
    head = head_module(model, name)
    prepare = batch_preparer(device, mean_std, None)
    features, probabilities, pixels = [], [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        f, logits = features_and_logits(model, head, prepare(chunk, False))
        features.append(f.float().cpu())
        probabilities.append(torch.softmax(logits.float(), 1).cpu())
        pixels.append(pooled_pixels(chunk))
        if progress:
            progress(start + len(chunk), len(images))
    return torch.cat(features), torch.cat(probabilities).numpy(), torch.cat(pixels)


def pick(count: int, limit: int, seed: int = 0) -> list[int]:
    """Up to `limit` of range(count), a seeded random choice kept in order (all of them when they fit)."""
    if count <= limit:
        return list(range(count))
    return sorted(np.random.default_rng(seed).choice(count, limit, replace=False).tolist())


def embed_run(loaded: LoadedRun, *, limit: int = 300, seed: int = 0, progress: Progress | None = None) -> Embedding:
    """The embedding of up to `limit` images of a run's validation split (a seeded choice).

    `progress(done, total)` counts decoded images, then embedded ones (total = 2 x images).
    Raises:
        ValueError: when the run stored no validation split or none of the chosen images decode.
    """
    samples = loaded.val_samples()
    if not samples:
        raise ValueError(
            f"Run {loaded.run_id} stored no validation split; retrain it (a logged run: pass val_samples to "
            "save_checkpoint) to see its embedding."
        )
    order = pick(len(samples), limit, seed)
    chosen, relative = [samples[i] for i in order], [loaded.val_paths[i] for i in order]
    total = 2 * len(chosen)
    bad: list[tuple[int, str]] = []
    images = decode_images([p for p, _ in chosen], loaded.config.resizing(), bad=bad)
    keep = sorted(set(range(len(chosen))) - {i for i, _ in bad})
    if not keep:
        raise ValueError(f"None of the {len(chosen)} chosen validation images decode; restore the dataset folder.")
    if progress:
        progress(len(chosen), total)
    images = images[keep]
    step = (lambda done, _n: progress(len(chosen) + done, total)) if progress else None
    features, probabilities, pixels = embed_tensors(
        loaded.model, images, loaded.mean_std, loaded.device, name=loaded.config.model, progress=step
    )
    model_xy, model_var = pca_2d(features, seed)
    pixel_xy, pixel_var = pca_2d(pixels, seed)
    return Embedding(
        paths=[relative[i] for i in keep],
        targets=np.array([chosen[i][1] for i in keep]),
        probabilities=probabilities,
        model_xy=model_xy,
        pixel_xy=pixel_xy,
        model_variance=model_var,
        pixel_variance=pixel_var,
        thumbnails=[thumbnail_url(img) for img in images],
        skipped=[(relative[i], why) for i, why in bad],
    )


def embedding_frame(embedding: Embedding, classes: list[str]) -> pd.DataFrame:
    """One row per image for the map: both projections, true and predicted class, confidence, thumbnail."""
    predicted = embedding.predicted
    return pd.DataFrame(
        {
            "path": embedding.paths,
            "true class": [classes[t] for t in embedding.targets],
            "predicted": [classes[p] for p in predicted],
            "confidence": embedding.probabilities[np.arange(len(predicted)), predicted],
            "outcome": np.where(predicted == embedding.targets, "right", "mistake"),
            "model_x": embedding.model_xy[:, 0],
            "model_y": embedding.model_xy[:, 1],
            "pixel_x": embedding.pixel_xy[:, 0],
            "pixel_y": embedding.pixel_xy[:, 1],
            "image": embedding.thumbnails,
        }
    )

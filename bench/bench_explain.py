"""Explain's costs against the obvious alternatives, on this machine's CPU (CUDA when present).

(a) Grad-CAM of one 64 px image on `cnn`, warm, vs one bare forward + backward pass of the same model
    (median of --repeats calls each).
(b) The embedding of --images images (penultimate features, predictions, raw pixels, both seeded PCAs)
    vs the bare inference pass over the same uint8 tensors (same batches, normalization, no_grad).

    python bench/bench_explain.py [--images 10000] [--size 32] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib.evaluation.attributions import attribute
from lib.evaluation.embeddings import embed_tensors, pca_2d
from lib.training.batches import batch_preparer
from lib.training.device import resolve_device
from lib.training.models import build_model

MEAN_STD = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gradcam_vs_backward(device: torch.device, repeats: int) -> None:
    model = build_model("cnn", 4, 64).to(device).eval()
    x = torch.randn(1, 3, 64, 64, device=device)

    def forward_backward():
        x_ = x.clone().requires_grad_(True)
        model(x_)[0, 0].backward()

    bare = median_seconds(forward_backward, repeats)
    cam = median_seconds(lambda: attribute(model, x, 0, "gradcam", MEAN_STD), repeats)
    print(f"(a) Grad-CAM 64 px cnn: {cam * 1e3:.2f} ms vs forward+backward {bare * 1e3:.2f} ms: {cam / bare:.2f}x")


def embedding_vs_inference(device: torch.device, images: int, size: int) -> None:
    model = build_model("cnn", 4, size).to(device).eval()
    data = torch.randint(0, 256, (images, 3, size, size), dtype=torch.uint8)
    prepare = batch_preparer(device, MEAN_STD, None)

    def bare():
        with torch.no_grad():
            for start in range(0, images, 256):
                model(prepare(data[start : start + 256], False)).cpu()

    def embedding():
        features, _, pixels = embed_tensors(model, data, MEAN_STD, device)
        pca_2d(features), pca_2d(pixels)

    bare()  # warm
    t0 = time.perf_counter()
    bare()
    t1 = time.perf_counter()
    embedding()
    t2 = time.perf_counter()
    print(
        f"(b) embedding {images:,} images of {size} px: {t2 - t1:.2f} s vs bare inference {t1 - t0:.2f} s: "
        f"{(t2 - t1) / (t1 - t0):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="images to embed (default: 10000)")
    parser.add_argument("--size", type=int, default=32, help="their side in pixels (default: 32)")
    parser.add_argument("--repeats", type=int, default=30, help="timed Grad-CAM calls (default: 30)")
    args = parser.parse_args()
    device = resolve_device("auto")
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    gradcam_vs_backward(device, args.repeats)
    embedding_vs_inference(device, args.images, args.size)


if __name__ == "__main__":
    main()

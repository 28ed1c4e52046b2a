"""Head mode against the plain recipe: `python bench/bench_models.py [--epochs 5] [--size 64] [--n 1797]`.

(a) Whole processes: `python -m lib train --model resnet18 --pretrained --finetune head` (features computed
    once, then only the head trains) against bench/_recipe_head.py, the plain recipe that runs the frozen
    backbone every epoch (ImageFolder + DataLoader, same weights, size, batch 64, Adam at 1e-3).
(b) Images/s of Torchscope's feature pass (lib.training.finetune.head_features) against a bare
    `model(x)` loop over the same decoded batches, timed batch by batch with the two alternating.
Both use random resnet18 weights written into a private torch hub cache (nothing is downloaded); the data are
n generated 64 px noise images in 10 classes (bench/_data.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import image_folder, noise

HERE = Path(__file__).resolve().parent


def seed_weights(torch_home: Path) -> None:
    """Random resnet18 weights where torch hub keeps IMAGENET1K_V1 (so `--pretrained` finds them)."""
    import torch
    import torchvision

    from lib.training.models import weights_enum, weights_file

    os.environ["TORCH_HOME"] = str(torch_home)
    path = weights_file(weights_enum("resnet18", "IMAGENET1K_V1"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TORCHSCOPE_CACHE_DIR": tempfile.mkdtemp()}
    )
    return time.perf_counter() - start


def processes(root: Path, epochs: int, size: int, runs: Path) -> tuple[float, float]:
    """(Torchscope's head mode, the plain recipe): seconds of each whole process."""
    ours = [sys.executable, "-m", "lib", "train", str(root), "--model", "resnet18", "--pretrained", "--finetune",
            "head", "--image-size", str(size), "--epochs", str(epochs), "--batch-size", "64", "--runs-dir", str(runs)]  # fmt: skip
    plain = [sys.executable, str(HERE / "_recipe_head.py"), str(root), "--epochs", str(epochs), "--size", str(size)]
    return timed(ours), timed(plain)


def feature_pass(root: Path, size: int) -> tuple[float, float]:
    """(images/s of head_features, images/s of a bare model(x) loop) over the same decoded images."""
    import torch

    from lib.data.index import build_index
    from lib.training.batches import batch_preparer, decode_images
    from lib.training.finetune import head_features
    from lib.training.models import build_model

    images = decode_images([p for p, _ in build_index(str(root)).samples], size)
    model = build_model("resnet18", 10, size, weights="IMAGENET1K_V1").eval()
    prepare = batch_preparer(torch.device("cpu"), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))

    # Batch by batch, the two alternating: whole passes drift with this shared machine's load.
    spent = {"ours": 0.0, "bare": 0.0}
    head_features(model, model.fc, images[:64], prepare, 64)  # warm-up, untimed
    for i in range(0, len(images), 64):
        batch = images[i : i + 64]
        start = time.perf_counter()
        head_features(model, model.fc, batch, prepare, 64)
        middle = time.perf_counter()
        with torch.inference_mode():
            model(prepare(batch, False))
        spent["ours"] += middle - start
        spent["bare"] += time.perf_counter() - middle
    rates = {k: len(images) / v for k, v in spent.items()}
    return rates["ours"], rates["bare"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    parser.add_argument("--size", type=int, default=64, help="(default: 64)")
    parser.add_argument("--n", type=int, default=1797, help="images (default: 1797, as sklearn's digits)")
    args = parser.parse_args()
    classes = [f"c{i}" for i in range(10)]
    root = image_folder(f"noise{args.size}-{args.n}", args.n, classes, noise(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        seed_weights(Path(tmp) / "torch-home")
        ours, plain = processes(root, args.epochs, args.size, Path(tmp) / "runs")
        feature_rate, bare_rate = feature_pass(root, args.size)
    print(json.dumps(dict(head_mode_s=round(ours, 1), plain_recipe_s=round(plain, 1), ratio=round(ours / plain, 3),
                          feature_pass_images_per_s=round(feature_rate), bare_model_images_per_s=round(bare_rate),
                          feature_vs_bare=round(feature_rate / bare_rate, 3))))  # fmt: skip
    print(
        f"head mode, resnet18 @{args.size}px, {args.n} images, {args.epochs} epochs: {ours:.1f} s vs the plain "
        f"recipe's {plain:.1f} s ({ours / plain:.2f}x); feature pass {feature_rate:.0f} images/s vs bare "
        f"model(x) {bare_rate:.0f} images/s ({feature_rate / bare_rate:.2f}x)"
    )


if __name__ == "__main__":
    main()

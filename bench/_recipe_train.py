"""The plain torchvision recipe, as a user would write it: `python bench/_recipe_train.py ROOT [--epochs 5]`.

ImageFolder + ToTensor + DataLoader (decoding every image every epoch, workers for the cores), an 80/20
split, the `linear` model (Flatten + Linear), Adam at 1e-3, batch 64, validation after each epoch. Only torch
and torchvision: nothing of Torchscope, so its start-up is the recipe's own. bench/bench_train.py runs it as
a whole process beside `python -m lib train`. Prints one JSON line: val_accuracy and seconds.
"""

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, transforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="(default: every core)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = datasets.ImageFolder(args.root, transform=transforms.ToTensor())
    n_val = len(data) // 5
    train_set, val_set = random_split(data, [len(data) - n_val, n_val])
    kw = dict(batch_size=args.batch_size, num_workers=args.workers, persistent_workers=args.workers > 0)
    train, val = DataLoader(train_set, shuffle=True, **kw), DataLoader(val_set, **kw)
    x0, _ = data[0]
    model = nn.Sequential(nn.Flatten(), nn.Linear(x0.numel(), len(data.classes)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for x, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
    print(json.dumps({"val_accuracy": correct / n_val, "epochs_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()

"""The plain linear-probe recipe: `python bench/_recipe_head.py ROOT [--epochs 5] [--size 64]`.

ImageFolder + Resize + ToTensor + Normalize + DataLoader (workers for the cores), an 80/20 split, torchvision's
resnet18 with the IMAGENET1K_V1 file from torch hub's cache (weights_only), its fc replaced, the backbone
frozen in eval mode and run on every batch of every epoch; Adam at 1e-3 on fc, batch 64, validation after
each epoch. Only torch and torchvision. bench/bench_models.py times it as a whole process.
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
from torchvision.models import ResNet18_Weights, resnet18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--epochs", type=int, default=5, help="(default: 5)")
    parser.add_argument("--size", type=int, default=64, help="(default: 64)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="(default: every core)")
    args = parser.parse_args()
    torch.manual_seed(0)
    norm = transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    tf = transforms.Compose([transforms.Resize((args.size, args.size)), transforms.ToTensor(), norm])
    data = datasets.ImageFolder(args.root, transform=tf)
    n_val = len(data) // 5
    train_set, val_set = random_split(data, [len(data) - n_val, n_val])
    kw = dict(batch_size=64, num_workers=args.workers, persistent_workers=args.workers > 0)
    train, val = DataLoader(train_set, shuffle=True, **kw), DataLoader(val_set, **kw)
    model = resnet18()
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url))
    model.load_state_dict(torch.load(path, weights_only=True))
    model.fc = nn.Linear(model.fc.in_features, len(data.classes))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.eval()  # frozen backbone: BatchNorm statistics stay the file's
        for x, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x).argmax(1) == y).sum().item()
    print(json.dumps({"val_accuracy": correct / n_val, "epochs_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()

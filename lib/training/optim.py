"""The optimizer and the per-batch learning-rate schedule a TrainConfig names."""

from __future__ import annotations

import warnings

import torch

from lib.training.config import TrainConfig


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """A per-batch schedule: step (x0.1 at each third of training), cosine to zero, or one-cycle; None for none."""
    sched = torch.optim.lr_scheduler
    if config.schedule == "step":
        return sched.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if config.schedule == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(2, total_steps))
    return None


def advance(scheduler, steps: int) -> None:
    """Step a fresh scheduler `steps` times without training, so its learning rate is the one an
    uninterrupted run reaches there (the same recursion, so the same floats)."""
    if scheduler is None or steps == 0:
        return
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            scheduler.step()

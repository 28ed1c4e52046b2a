"""Continuing a run: the steps after the join equal an uninterrupted run's (same seed, CPU), step numbers
continue, the optimizer state comes back, and a stop mid-epoch resumes at its exact step."""

import copy
import dataclasses
import math
import threading

import pytest
import torch

from lib.data.index import build_index
from lib.data.sample import sample_root
from lib.training.config import TrainConfig
from lib.training.engine import Hooks, fit
from lib.training.resume import continue_config

CONFIG = TrainConfig(
    model="cnn",
    image_size=8,
    epochs=2,
    batch_size=16,
    max_batches=4,
    random_crop=True,
    hflip=True,
    seed=3,
    device="cpu",  # resumed == uninterrupted bit for bit: on the CPU; cuDNN's kernels agree only to about 1e-6
)


@pytest.fixture(scope="module")
def sample():
    return build_index(str(sample_root()))


class Keeping(Hooks):
    """Keeps every step (step, epoch, loss, lr) and every checkpoint; stops after `stop_at` steps."""

    def __init__(self, stop_at: int | None = None, stop: threading.Event | None = None):
        self.steps, self.checkpoints, self.stop_at, self.stop, self.notes = [], [], stop_at, stop, []

    def on_progress(self, message):
        self.notes.append(message)
        return False

    def on_step(self, step, epoch, train_loss, lr, samples_per_sec):
        self.steps.append((step, epoch, train_loss, lr))
        if self.stop_at is not None and len(self.steps) >= self.stop_at:
            self.stop.set()
        return False

    def on_checkpoint(self, state, best):
        self.checkpoints.append(copy.deepcopy(state))  # the optimizer's tensors are live: keep this moment's


def _fit(config, sample, start=None, stop_at=None, **options):
    stop = threading.Event()
    hooks = Keeping(stop_at, stop)
    result = fit(config, sample.samples, sample.classes, hooks, stop, start=start, **options)
    return result, hooks


def _tensors(state: dict) -> list[torch.Tensor]:
    """Every tensor of an optimizer state dict, in a fixed order."""
    return [t for s in state["state"].values() for _, t in sorted(s.items()) if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("cache_bytes", [2**31, 0], ids=["in-memory", "streamed"])
def test_one_epoch_then_one_more_equals_two_epochs(sample, cache_bytes):
    config = dataclasses.replace(CONFIG, epochs=2)
    full, full_hooks = _fit(config, sample)
    assert full.status == "completed", full.message
    first, first_hooks = _fit(dataclasses.replace(config, epochs=1), sample)
    parent = first_hooks.checkpoints[-1]
    # The parent's checkpoint holds what the uninterrupted run had after epoch 1 (optimizer state included).
    for a, b in zip(_tensors(parent["optimizer"]), _tensors(full_hooks.checkpoints[0]["optimizer"]), strict=True):
        assert torch.equal(a, b)
    more = continue_config(parent, 1)
    assert more.epochs == 2
    stop = threading.Event()
    hooks = Keeping()
    resumed = fit(more, sample.samples, sample.classes, hooks, stop, start=parent, cache_bytes=cache_bytes, workers=0)
    assert resumed.status == "completed", resumed.message
    per_epoch = CONFIG.max_batches
    assert [s for s, *_ in hooks.steps] == list(range(per_epoch + 1, 2 * per_epoch + 1))  # steps continue
    assert [e for _, e, *_ in hooks.steps] == [2] * per_epoch and resumed.epochs[0]["epoch"] == 2
    expected = [loss for _, _, loss, _ in full_hooks.steps[per_epoch:]]
    assert resumed.losses == pytest.approx(expected, abs=1e-6)
    assert resumed.epochs[0]["val_loss"] == pytest.approx(full.epochs[1]["val_loss"], abs=1e-6)
    assert hooks.checkpoints[-1]["step"] == 2 * per_epoch and hooks.checkpoints[-1]["epoch"] == 2


def test_a_stop_mid_epoch_resumes_at_its_exact_step(sample):
    config = dataclasses.replace(CONFIG, epochs=2)
    full, full_hooks = _fit(config, sample)
    stopped, hooks = _fit(config, sample, stop_at=6)  # 4 batches per epoch: stopped at epoch 2, batch 2
    assert stopped.status == "stopped"
    partial = hooks.checkpoints[-1]
    assert partial["partial"] and (partial["epoch"], partial["step"]) == (1, 6)
    resumed, resumed_hooks = _fit(continue_config(partial, 1), sample, start=partial)
    assert resumed.status == "completed", resumed.message
    assert [s for s, *_ in resumed_hooks.steps] == [7, 8]
    assert resumed.losses == pytest.approx(full.losses[6:], abs=1e-6)


def test_the_schedule_is_the_one_over_the_extended_total(sample):
    """Cosine over 1 epoch, continued by 1: the resumed learning rates are those of a 2-epoch cosine run."""
    config = dataclasses.replace(CONFIG, schedule="cosine", optimizer="sgd", lr=0.05, epochs=2)
    _, full_hooks = _fit(config, sample)
    _, first_hooks = _fit(dataclasses.replace(config, epochs=1), sample)
    assert first_hooks.steps[-1][3] > 0  # the 1-epoch schedule's last step used a small, positive lr
    _, hooks = _fit(continue_config(first_hooks.checkpoints[-1], 1), sample, start=first_hooks.checkpoints[-1])
    per_epoch = CONFIG.max_batches
    expected = [0.025 * (1 + torch.cos(torch.tensor(torch.pi * s / (2 * per_epoch))).item()) for s in range(4, 8)]
    assert [lr for *_, lr in hooks.steps] == pytest.approx(expected, rel=1e-6)  # closed form, independent
    assert [lr for *_, lr in hooks.steps] == pytest.approx([lr for *_, lr in full_hooks.steps[4:]], rel=1e-9)


def test_a_resume_with_dataloader_workers_equals_an_uninterrupted_run(sample):
    """Streamed, the resumed epoch decoded by a DataLoader worker process: its order and augmentation are
    those of one uninterrupted run without workers."""
    config = dataclasses.replace(CONFIG, epochs=2)
    full, _ = _fit(config, sample, cache_bytes=0, workers=0)
    _, first_hooks = _fit(dataclasses.replace(config, epochs=1), sample, cache_bytes=0, workers=0)
    parent = first_hooks.checkpoints[-1]
    resumed, _ = _fit(continue_config(parent, 1), sample, start=parent, cache_bytes=0, workers=1)
    assert resumed.status == "completed", resumed.message
    assert resumed.losses == pytest.approx(full.losses[CONFIG.max_batches :], abs=1e-6)


def _one_cycle(step: int, total: int, max_lr: float) -> float:
    """torch's OneCycleLR defaults written out: warm up over 30% of the steps from max_lr / 25, then cosine
    down to max_lr / 25 / 1e4 at the last step."""
    start, low, peak = max_lr / 25, max_lr / 25 / 1e4, 0.3 * total - 1
    if step <= peak:
        return start + (max_lr - start) / 2 * (1 - math.cos(math.pi * step / peak))
    return low + (max_lr - low) / 2 * (1 + math.cos(math.pi * (step - peak) / (total - 1 - peak)))


@pytest.mark.parametrize(
    ("schedule", "rate"),
    [
        ("step", lambda s: 0.05 * 0.1 ** (s // (8 // 3))),  # x0.1 each third of the 8 steps
        ("onecycle", lambda s: _one_cycle(s, 8, 0.05)),
    ],
    ids=["step", "onecycle"],
)
def test_step_and_onecycle_schedules_resume_where_the_uninterrupted_run_is(sample, schedule, rate):
    config = dataclasses.replace(CONFIG, schedule=schedule, optimizer="sgd", lr=0.05, epochs=2)
    _, full_hooks = _fit(config, sample)
    _, first_hooks = _fit(dataclasses.replace(config, epochs=1), sample)
    _, hooks = _fit(continue_config(first_hooks.checkpoints[-1], 1), sample, start=first_hooks.checkpoints[-1])
    resumed = [lr for *_, lr in hooks.steps]
    assert resumed == pytest.approx([rate(s) for s in range(4, 8)], rel=1e-6)  # closed form, independent
    assert resumed == pytest.approx([lr for *_, lr in full_hooks.steps[4:]], rel=1e-9)


def test_a_changed_dataset_is_refused_and_an_old_checkpoint_resumes_with_a_note(sample):
    _, hooks = _fit(dataclasses.replace(CONFIG, epochs=1), sample)
    parent = hooks.checkpoints[-1]
    moved = {**parent, "val_paths": parent["val_paths"][1:]}
    result, _ = _fit(continue_config(parent, 1), sample, start=moved)
    assert result.status == "failed" and "dataset changed" in result.message
    old = {k: v for k, v in parent.items() if k != "rng"}
    result, old_hooks = _fit(continue_config(parent, 1), sample, start=old)
    assert result.status == "completed" and any("predates" in n for n in old_hooks.notes)


def test_continue_config_refuses_zero_epochs():
    with pytest.raises(ValueError, match="at least 1 more epoch"):
        continue_config({"config": CONFIG.to_dict(), "epoch": 2}, 0)

"""Continuing a run from its checkpoint so that the steps after the join are the ones an uninterrupted run
of the same total length takes (same seed, CPU: equal to float rounding).

What is restored: the weights (with BatchNorm statistics), the optimizer state (Adam moments, momentum
buffers, step counts), the data-order and augmentation generators (checkpoint key `rng`), and the step
count, so the new run's steps continue the parent's numbers. A checkpoint saved mid-epoch (`partial`)
resumes at its exact step: that epoch's order is drawn again from its start state and the batches already
trained are skipped.

The schedule is rebuilt over the extended total (parent epochs + N) and advanced to the parent's step:
the schedule an uninterrupted run of that length would follow. Its stored state is not reused, since its
horizon was the old total. For `step` and `cosine` and `onecycle` the learning rate therefore moves at
the join from the old horizon's value to the longer one's (a completed cosine parent ends near zero; the
continuation restarts partway up its longer curve); with `none` nothing changes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.runs.status import Status
from lib.runs.store import RunRecord, RunStore
from lib.training.config import TrainConfig, stored_config

if TYPE_CHECKING:  # torch only for hints: the app's server plans a continued run without importing it
    import torch
    from torch import nn

RESUMABLE = (Status.STOPPED, Status.COMPLETED, Status.INTERRUPTED)  # what the pages offer "Train more" on

OLD_CHECKPOINT_NOTE = (
    "This checkpoint predates stored generator states: the data order and augmentation after the join "
    "differ from an uninterrupted run."
)


@dataclass(frozen=True)
class Begin:
    epoch: int  # the first epoch to train, 1-based
    step: int  # optimizer steps already taken (the parent's); the next step is step + 1
    skip: int  # batches of the first epoch already trained (a partial checkpoint)


def continue_config(parent: dict, more_epochs: int, name: str = "") -> TrainConfig:
    """The config of a run that trains `more_epochs` after the checkpoint `parent` (or any dict with its
    "config" and "epoch"): the parent's recipe with epochs = whole epochs it finished + more_epochs.

    Raises:
        ValueError: when more_epochs is not a whole number of at least 1.
    """
    if isinstance(more_epochs, bool) or not isinstance(more_epochs, int) or more_epochs < 1:
        raise ValueError(f"Train at least 1 more epoch, got {more_epochs!r}.")
    config = stored_config(parent["config"], None)
    # A continuation runs in one process, whatever the parent spanned (torchrun refuses --resume).
    return dataclasses.replace(config, epochs=int(parent["epoch"]) + more_epochs, name=name, world_size=1)


def resumable(store: RunStore, run_id: str) -> RunRecord:
    """The run to continue, checked: known, not training, with a `last` checkpoint.

    Raises:
        ValueError: for an unknown run, one still training, or one without a checkpoint.
    """
    record = store.get_run(run_id)
    if record is None:
        raise ValueError(f"No run {run_id} in {store.root}; list the runs with `python -m lib runs`.")
    if record.status == Status.RUNNING:
        raise ValueError(f"Run {run_id} is still training; wait for it to end or stop it, then continue it.")
    if not store.files.checkpoint_path(run_id, "last").exists():
        raise ValueError(f"Run {run_id} has no checkpoint to continue from; it ended before its first epoch did.")
    if "optimizer" not in store.files.load_checkpoint(run_id, "last"):  # saved by a user's loop (the logger)
        raise ValueError(f"Run {run_id} was logged by a script, not trained here; continue it from that script.")
    if not record.root:
        raise ValueError(
            f"Run {run_id} was imported, so its dataset is not known here; pick it on the Evaluate page "
            "(Use this dataset), then continue the run."
        )
    return record


def resume_point(
    start: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator | None,
    augment: torch.Generator | None,
    per_epoch: int,
    note: Callable[[str], object],
) -> Begin:
    """Load start's weights, optimizer state and generator states; return where training picks up.

    Raises:
        ValueError: when the checkpoint's step does not fit this run's batches per epoch.
    """
    model.load_state_dict(start["model"])
    optimizer.load_state_dict(start["optimizer"])
    for group in optimizer.param_groups:  # a schedule is rebuilt from step 0: start it from its base rate
        group["lr"] = group.get("initial_lr", group["lr"])
    rng = start.get("rng") or {}
    if "shuffle" not in rng:
        note(OLD_CHECKPOINT_NOTE)
    for generator, key in ((shuffle, "shuffle"), (augment, "augment")):
        if generator is not None and key in rng:
            generator.set_state(rng[key])
    epoch, step = int(start["epoch"]), int(start["step"])
    skip = step - epoch * per_epoch
    if not 0 <= skip < per_epoch:
        raise ValueError(
            f"The checkpoint is at step {step} after {epoch} epochs, which does not fit {per_epoch} batches per "
            "epoch; the dataset or batch size changed, so start a new run instead."
        )
    return Begin(epoch + 1, step, skip)


def same_split(start: dict, val_samples: list[tuple[str, int]]) -> None:
    """Check that the validation split drawn now is the one the checkpoint's run held out.

    Raises:
        ValueError: when they differ (the dataset changed): continuing would train on validation images.
    """
    root = start.get("root") or ""
    stored = {os.path.realpath(os.path.join(root, p)) for p in start.get("val_paths", [])}
    current = {os.path.realpath(p) for p, _ in val_samples}
    if stored and stored != current:
        raise ValueError(
            f"The dataset changed since this checkpoint: {len(stored ^ current)} validation images differ, "
            "so continuing would train on images the parent validated on; start a new run instead."
        )

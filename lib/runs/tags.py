"""How TensorBoard scalar tags become the run store's columns (import-tb, SummaryWriter, export).

| tag                                                      | column         |
|----------------------------------------------------------|----------------|
| `train/loss`, `loss/train`, `train_loss`, `loss`         | train_loss     |
| `val/loss`, `val_loss`, `loss/val`                       | val_loss       |
| `val/accuracy`, `val/acc`, `val_accuracy`, `accuracy/val`| val_accuracy   |
| `lr`, `learning_rate`                                    | lr             |
| `samples_per_sec`, `train/samples_per_sec`               | samples_per_sec|
| any other tag                                            | an extra metric named as the tag |

val_loss and val_accuracy make epoch rows; the others step rows. `epoch/train_loss`, `epoch/lr` and
`epoch/samples_per_sec` at a validation step fill that epoch's row (export writes an epoch's own
figures so, and they import back); anywhere else they are extra metrics.
"""

from __future__ import annotations

TAGS = {
    "train_loss": ("train/loss", "loss/train", "train_loss", "loss"),
    "val_loss": ("val/loss", "val_loss", "loss/val"),
    "val_accuracy": ("val/accuracy", "val/acc", "val_accuracy", "accuracy/val"),
    "lr": ("lr", "learning_rate"),
    "samples_per_sec": ("samples_per_sec", "train/samples_per_sec"),
}
COLUMN_OF = {tag: column for column, tags in TAGS.items() for tag in tags}
EPOCH_ONLY = ("val_loss", "val_accuracy")  # a value of these is an epoch's validation
# What `export --format tensorboard` names each column (the first tag of its row: imports back to it).
STEP_TAG = {column: TAGS[column][0] for column in ("train_loss", "lr", "samples_per_sec")}
EPOCH_TAG = {
    "train_loss": "epoch/train_loss", "val_loss": "val/loss", "val_accuracy": "val/accuracy",
    "lr": "epoch/lr", "samples_per_sec": "epoch/samples_per_sec",
}  # fmt: skip


def column_for(tag: str) -> str | None:
    """The store column a tag maps to, or None when it is an extra metric."""
    return COLUMN_OF.get(tag)


def epoch_column_for(tag: str) -> str | None:
    """The epoch-row column an `epoch/...` tag fills at a validation step, or None."""
    column = tag.removeprefix("epoch/")
    return column if tag.startswith("epoch/") and EPOCH_TAG.get(column) == tag else None

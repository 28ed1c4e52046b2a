"""A checkpoint holds all it takes to rebuild a run's model and its inputs; `load_model` does the rebuilding.

A checkpoint is a plain dict of tensors, numbers, strings and lists, saved with `torch.save` and loaded
with `weights_only=True` (no pickled code runs on load). Keys (FORMAT 1):

    format       1
    model        the model's state_dict (CPU tensors; the unwrapped module under DDP)
    optimizer    optimizer.state_dict(), scheduler: scheduler.state_dict() or None
    epoch, step  epochs finished and optimizer steps taken when it was saved
    partial      True when saved mid-epoch (a stopped run): `step` is exact, `epoch` epochs were whole
    config       TrainConfig.to_dict(), the full recipe
    classes      class names, index order
    mean, std    the normalization the model was trained with (lists of 3 floats), or None
    root         the dataset root the run read ("" when unknown); written for plain-torch readers, never read
                 back: the run's row in the store names the folder (an imported file's root is another machine's)
    val_paths    the validation split the run evaluated on, relative to root (POSIX), in evaluation order
    val_targets  their class indices
    metrics      the epoch's metrics when saved (train_loss, val_loss, val_accuracy, ...), {} mid-epoch
    rng          {"shuffle": the data-order generator's state at the start of epoch `epoch + 1`,
                  "augment": the augmentation generator's state at `step`, or None}: uint8 tensors that let
                  a resumed run draw exactly what an uninterrupted one would (absent in older checkpoints)

Plain torch rebuilds the model without this package:

    ckpt = torch.load("runs/checkpoints/<run_id>/last.pt", weights_only=True)
    model = torchvision.models.get_model(ckpt["config"]["model"])  # a torchvision model: its head replaced
    model.fc = torch.nn.Linear(model.fc.in_features, len(ckpt["classes"]))  # resnet's rule; see HEADS
    model.load_state_dict(ckpt["model"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch
from torch import nn

from lib.runs.store import RunStore
from lib.settings import Settings, load_settings
from lib.training.config import MODELS, TrainConfig, is_model_file, stored_config
from lib.training.models import build_model, file_sha256, split_model_file

FORMAT = 1


def make_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    *,
    config: TrainConfig,
    classes: list[str],
    mean_std: tuple | None,
    val_samples: list[tuple[str, int]],
    epoch: int,
    step: int,
    metrics: dict | None = None,
    partial: bool = False,
    rng: dict | None = None,
) -> dict:
    """The checkpoint dict (see the module docstring); tensors are copied to the CPU."""
    mean, std = mean_std if mean_std is not None else (None, None)
    return {
        "format": FORMAT,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "step": step,
        "partial": partial,
        "config": config.to_dict(),
        "classes": list(classes),
        "mean": [float(m) for m in mean] if mean is not None else None,
        "std": [float(s) for s in std] if std is not None else None,
        "root": "",
        "val_paths": [p for p, _ in val_samples],
        "val_targets": [int(t) for _, t in val_samples],
        "metrics": dict(metrics or {}),
        "rng": {k: v.clone() for k, v in (rng or {}).items() if v is not None},
    }


def relative_to_root(state: dict, root: str | Path) -> dict:
    """The same checkpoint with its validation paths relative to `root` (POSIX), so the folder can move."""
    root = Path(root).resolve()
    rel = [PurePosixPath(*Path(p).resolve().relative_to(root).parts).as_posix() for p in state["val_paths"]]
    return {**state, "root": str(root), "val_paths": rel}


@dataclass
class LoadedRun:
    """A run's model rebuilt from its checkpoint, in eval mode, with what it takes to feed it."""

    run_id: str
    model: nn.Module
    config: TrainConfig
    classes: list[str]
    mean_std: tuple | None
    root: Path | None  # None: imported, and its owner has not picked the dataset folder yet
    val_paths: list[str]  # relative to root (absolute for checkpoints saved without a root)
    val_targets: list[int]
    epoch: int
    step: int
    device: torch.device
    metrics: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict, repr=False)  # optimizer/scheduler state, for resuming
    note: str = ""  # one sentence about the rebuild, e.g. a model file that changed since the run

    def val_samples(self) -> list[tuple[str, int]]:
        """The stored validation split as [(absolute path, class index)], in evaluation order.

        Raises:
            ValueError: for an imported run whose dataset folder is not picked yet.
        """
        return [(self.image_path(p), t) for p, t in zip(self.val_paths, self.val_targets)]

    def image_path(self, relative: str) -> str:
        """Where a validation image lives (Raises ValueError as val_samples)."""
        if self.root is None:
            raise ValueError(
                f"Run {self.run_id} was imported, so the dataset folder to evaluate it on is not known here; "
                "pick one (on the Evaluate page, the dataset open in the sidebar) first."
            )
        return str(self.root / relative)


def _rebuilt(run_id: str, ckpt: dict, settings: Settings) -> tuple[TrainConfig, nn.Module, str]:
    """The config (held to this server's limits), the untrained model a checkpoint names (the architecture
    its weights need; the weights file is not read) and a note on a model file (model_file_note).

    Raises:
        ValueError: when its config names no model Torchscope builds (a logged run's own model), or is
            out of range or over the limits.
    """
    model = ckpt["config"].get("model") if isinstance(ckpt["config"], dict) else None
    if not isinstance(model, str) or not (model in MODELS or is_model_file(model)):
        raise ValueError(
            f"Run {run_id} saved a model Torchscope cannot rebuild ({str(model)[:60]!r}), so it cannot be opened "
            "here; a logged run can be when its config names a model of `python -m lib models` and its image_size."
        )
    try:
        config = stored_config(ckpt["config"], settings)
    except ValueError as e:
        raise ValueError(f"Run {run_id} cannot be loaded here: {e}") from None
    note = model_file_note(config)
    model = build_model(config.model, len(ckpt["classes"]), config.image_size, weights=config.weights_name, load=False)
    return config, model, note


def load_model(
    run_id: str,
    *,
    runs_dir: str | Path | None = None,
    which: str = "last",
    device: str | torch.device = "cpu",
    settings: Settings | None = None,
) -> LoadedRun:
    """Rebuild run_id's model from its `last` or `best` checkpoint (strict load, weights_only=True).

    The images it reads are under the dataset folder the run's row names (None for an imported run whose
    owner has not picked one); its config is held to the server's limits (`settings`, default the
    environment's) as a new run's would be.

    Raises:
        ValueError: for an unknown run, a run without that checkpoint, a config over the limits, or a
            checkpoint that does not match its model (say which).
    """
    store = RunStore(runs_dir)
    record = store.get_run(run_id)
    if record is None:
        raise ValueError(f"No run {run_id} in {store.root}; list the runs with `python -m lib runs`.")
    ckpt = store.files.load_checkpoint(run_id, which)
    if "model" not in ckpt:  # the first checkpoints: weights and normalization only, no split
        ckpt = {"model": ckpt["model_state"], "val_paths": [], "val_targets": [], "epoch": 0, "step": 0, **ckpt}
    config, model, note = _rebuilt(run_id, ckpt, settings or load_settings())
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise ValueError(f"The checkpoint of run {run_id} does not fit a {config.model} model: {e}") from None
    device = torch.device(device)
    mean_std = (tuple(ckpt["mean"]), tuple(ckpt["std"])) if ckpt.get("mean") is not None else None
    return LoadedRun(
        run_id=run_id,
        model=model.to(device).eval(),
        config=config,
        classes=list(ckpt["classes"]),
        mean_std=mean_std,
        root=Path(record.root) if record.root else None,
        val_paths=list(ckpt["val_paths"]),
        val_targets=list(ckpt["val_targets"]),
        epoch=int(ckpt["epoch"]),
        step=int(ckpt["step"]),
        device=device,
        metrics=dict(ckpt.get("metrics", {})),
        checkpoint=ckpt,
        note=note,
    )


def model_file_note(config: TrainConfig) -> str:
    """One sentence when a run's model file changed since it trained ("" otherwise; a strict load decides
    whether it still fits).

    Raises:
        ValueError: when the file is gone.
    """
    if not is_model_file(config.model):
        return ""
    path, _ = split_model_file(config.model)
    if not path.is_file():
        raise ValueError(f"The run's model file {path} is gone; put it back there to rebuild the run.")
    if config.model_sha256 and file_sha256(path) != config.model_sha256:
        return f"The model file {path} changed since this run trained; its weights still loaded strictly into it."
    return ""

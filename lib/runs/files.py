"""A run's files beside the run store: `checkpoints/<run_id>/` holds last.pt, best.pt and the predictions
of each (predictions-last.npz, predictions-best.npz), so deleting the folder deletes them all.

Every file is written to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHECKPOINTS = ("last", "best")


class RunFiles:
    """The checkpoint and prediction files of the runs in the runs folder `root`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, run_id: str) -> Path:
        """The folder of a run's checkpoints and predictions (it may not exist yet)."""
        return self.root / "checkpoints" / run_id

    def usage(self, run_ids: list[str]) -> int:
        """Bytes of these runs' checkpoints and predictions on disk."""
        from lib.data.folders import disk_usage

        return sum(disk_usage(self.folder(run_id)) for run_id in run_ids)

    def checkpoint_path(self, run_id: str, which: str = "last") -> Path:
        """Where a run's `last` (end of its latest epoch, or where it stopped) or `best` checkpoint lives."""
        if which not in CHECKPOINTS:
            raise ValueError(f"Unknown checkpoint {which!r}; choose one of {', '.join(CHECKPOINTS)}.")
        return self.folder(run_id) / f"{which}.pt"

    def save_checkpoint(self, run_id: str, state: dict, which: str = "last") -> str:
        """Write a checkpoint dict atomically (temp file, then rename) and return its path.

        `state` holds only tensors, numbers, strings and lists/dicts of them, so it loads back with
        `torch.load(..., weights_only=True)`: see lib/training/checkpoint.py for its keys.
        """
        import torch  # here, not at the top: listing runs needs no torch

        path = self.checkpoint_path(run_id, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return str(path)

    def load_checkpoint(self, run_id: str, which: str = "last") -> dict:
        """The checkpoint dict, loaded with weights_only=True onto the CPU.

        Raises:
            ValueError: when the run has no such checkpoint (it ended before its first epoch did).
        """
        import torch

        path = self.checkpoint_path(run_id, which)
        legacy = self.root / "checkpoints" / f"{run_id}.pt"  # before checkpoints had a folder per run
        if not path.exists() and which == "last" and legacy.exists():
            path = legacy
        if not path.exists():
            raise ValueError(
                f"Run {run_id} has no {which} checkpoint; a run saves one at the end of each epoch "
                "and when it is stopped, so train at least one epoch."
            )
        return torch.load(path, map_location="cpu", weights_only=True)

    def predictions_path(self, run_id: str, which: str = "last") -> Path:
        """Where the predictions of a run's `which` checkpoint are stored: beside it, deleted with it."""
        return self.checkpoint_path(run_id, which).with_name(f"predictions-{which}.npz")

    def save_predictions(self, run_id: str, arrays: dict, which: str = "last") -> Path:
        """Write named numpy arrays (numbers and strings only) atomically; lib.evaluation.predictions says which."""
        import numpy as np

        path = self.predictions_path(run_id, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        return path

    def load_predictions(self, run_id: str, which: str = "last") -> dict | None:
        """The stored arrays (loaded without pickle), or None when none are stored or the file is unreadable."""
        import numpy as np

        try:
            with np.load(self.predictions_path(run_id, which), allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):  # missing, or cut short: predict again
            return None

    def delete(self, run_id: str) -> None:
        """Remove a run's checkpoints and the predictions stored beside them."""
        shutil.rmtree(self.folder(run_id), ignore_errors=True)
        (self.root / "checkpoints" / f"{run_id}.pt").unlink(missing_ok=True)

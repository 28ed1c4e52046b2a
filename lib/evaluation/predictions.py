"""A run's predictions on its validation split: computed once per checkpoint, stored with the run.

`predict(loaded)` runs the rebuilt model over the stored split (decoded and resized by the engine's
own `decode_images`, normalized by its `batch_preparer`, batched as validation was, under
`torch.inference_mode`) and keeps per image: relative path, true class, predicted class, the ranked
softmax probabilities (all of them up to MAX_FULL classes, the top TOP_K above) and the loss.

`run_predictions(run_id)` is what pages and the command line call: it reads the stored predictions
when they were made from the checkpoint as it is now (same file size and modification time), and
otherwise predicts and stores them (`RunFiles.save_predictions`, a file beside the checkpoint,
deleted with it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.data.marks import read_marks
from lib.runs.store import RunStore
from lib.settings import Settings
from lib.training.batches import batch_preparer, decode_images
from lib.training.checkpoint import LoadedRun, load_model
from lib.training.device import resolve_device

FORMAT = 1
MAX_FULL = 20  # up to this many classes every probability is kept; above, the TOP_K largest
TOP_K = 10
CHUNK = 2048  # images decoded at a time: memory stays bounded whatever the split's size
Progress = Callable[[int, int], None]  # (images done, total)


@dataclass(frozen=True)
class Predictions:
    """Per image of the split (N of them, those that decoded), in evaluation order.

    top_classes/top_probs are each image's classes by falling probability, (N, k), k = K up to MAX_FULL.
    """

    run_id: str
    which: str
    key: str  # the checkpoint these came from: "<size>:<mtime_ns>"
    classes: list[str]
    paths: np.ndarray  # (N,) str, relative to the dataset root, POSIX
    targets: np.ndarray  # (N,) int64
    preds: np.ndarray  # (N,) int64, argmax of the logits
    loss: np.ndarray  # (N,) float32, cross-entropy of the true class
    top_classes: np.ndarray  # (N, k) int64
    top_probs: np.ndarray  # (N, k) float32
    bad: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason): left out

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def confidence(self) -> np.ndarray:
        """The max softmax probability of each image, (N,)."""
        return self.top_probs[:, 0]

    @property
    def complete(self) -> bool:
        """Whether every class's probability is stored (K <= MAX_FULL)."""
        return self.top_probs.shape[1] == len(self.classes)

    def probabilities(self) -> np.ndarray:
        """(N, K) float32 softmax probabilities. Above MAX_FULL classes only the top TOP_K and the true
        class's (exp(-loss)) are known; the rest read 0, below every stored one."""
        probs = np.zeros((len(self), len(self.classes)), dtype=np.float32)
        if not self.complete:
            probs[np.arange(len(self)), self.targets] = np.exp(-self.loss)
        np.put_along_axis(probs, self.top_classes, self.top_probs, axis=1)
        return probs

    def to_arrays(self) -> dict[str, np.ndarray]:
        """What RunFiles.save_predictions writes (numbers and strings only: no pickle to load it)."""
        bad = np.array(self.bad, dtype=str).reshape(-1, 2)
        meta = np.array([str(FORMAT), self.run_id, self.which, self.key])
        return dict(meta=meta, classes=np.array(self.classes, dtype=str), paths=self.paths, targets=self.targets,
                    preds=self.preds, loss=self.loss, top_classes=self.top_classes, top_probs=self.top_probs,
                    bad=bad)  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Predictions:
        fmt, run_id, which, key = (str(x) for x in a["meta"])
        if int(fmt) != FORMAT:
            raise ValueError(f"Stored predictions have format {fmt}, not {FORMAT}.")
        return cls(run_id, which, key, [str(c) for c in a["classes"]], a["paths"], a["targets"], a["preds"],
                   a["loss"], a["top_classes"], a["top_probs"], [(str(p), str(r)) for p, r in a["bad"]])  # fmt: skip


def checkpoint_key(store: RunStore, run_id: str, which: str = "last") -> str:
    """Size and modification time of the checkpoint file: they change whenever it is rewritten.

    Raises:
        ValueError: when the run has no such checkpoint.
    """
    try:
        st = store.files.checkpoint_path(run_id, which).stat()
    except FileNotFoundError:
        raise ValueError(f"Run {run_id} has no {which} checkpoint; train at least one epoch.") from None
    return f"{st.st_size}:{st.st_mtime_ns}"


def predictions_key(store: RunStore, run_id: str, which: str = "last", marks_base: Path | None = None) -> str:
    """checkpoint_key, plus a digest of the files marked to leave out of the run's dataset when there are
    any (lib.data.marks): marking or unmarking a file predicts again without it or with it.

    Raises:
        ValueError: when the run has no such checkpoint.
    """
    key = checkpoint_key(store, run_id, which)
    record = store.get_run(run_id)
    marks = read_marks(record.root, marks_base) if record is not None and record.root else []
    return f"{key}:marks-{hashlib.sha1(chr(10).join(marks).encode()).hexdigest()[:8]}" if marks else key


def run_predictions(
    run_id: str,
    *,
    runs_dir: str | Path | None = None,
    which: str = "last",
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    marks_base: Path | None = None,
    settings: Settings | None = None,
) -> Predictions:
    """The stored predictions of run_id's checkpoint, predicting and storing them first when they are
    missing or older than the checkpoint. `device` None: the run's own choice (its config's `device`),
    or the CPU when that is not available here. Validation images marked to leave out (lib.data.marks, read
    from `marks_base`) are skipped and listed in `bad` with that reason.

    Raises:
        ValueError: unknown run, no checkpoint, validation images gone (names them), nothing decodes.
    """
    store = RunStore(runs_dir)
    record = store.get_run(run_id)
    if record is None:
        raise ValueError(f"No run {run_id} in {store.root}; list the runs with `python -m lib runs`.")
    key = predictions_key(store, run_id, which, marks_base)
    stored = stored_predictions(store, run_id, which)
    if stored is not None and stored.key == key:
        return stored
    device = device or run_device(record.config)
    loaded = load_model(run_id, runs_dir=store.root, which=which, device=device, settings=settings)
    marked = (
        set(read_marks(loaded.root, marks_base)) if loaded.root else set()
    )  # imported, no folder yet: predict says so
    kept = [(p, t) for p, t in zip(loaded.val_paths, loaded.val_targets) if p not in marked]
    left_out = [(p, "marked to leave out") for p in loaded.val_paths if p in marked]
    if left_out:
        loaded = replace(loaded, val_paths=[p for p, _ in kept], val_targets=[t for _, t in kept])
    found = predict(loaded, progress=progress, which=which, key=key)
    if left_out:
        found = replace(found, bad=left_out + list(found.bad))
    store.files.save_predictions(run_id, found.to_arrays(), which)
    return found


def run_device(config: dict) -> torch.device:
    """The device a run chose (auto: CUDA, MPS, CPU), or the CPU when that one is not on this machine."""
    try:
        return resolve_device(config.get("device", "auto"))
    except ValueError:  # trained on a GPU elsewhere: predicting on the CPU gives the same answers, slower
        return torch.device("cpu")


def stored_predictions(store: RunStore, run_id: str, which: str = "last") -> Predictions | None:
    """What is stored for the run (maybe from an older checkpoint: compare `key`), or None."""
    arrays = store.files.load_predictions(run_id, which)
    if arrays is None:
        return None
    try:
        return Predictions.from_arrays(arrays)
    except (KeyError, ValueError):  # another format: predict again
        return None


def predict(
    loaded: LoadedRun,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    which: str = "last",
    key: str = "",
) -> Predictions:
    """Run loaded's model once over its stored validation split (see the module docstring).

    Raises:
        ValueError: when the split is empty, its files are gone (names the first few), or none decodes.
    """
    samples = loaded.val_samples()
    if not samples:
        raise ValueError(
            f"Run {loaded.run_id} stored no validation split; train it again (a logged run: pass val_samples "
            "to save_checkpoint) to evaluate it."
        )
    missing = [rel for rel, (p, _) in zip(loaded.val_paths, samples) if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(samples)} validation images are missing under {loaded.root}, e.g. "
            f"{', '.join(missing[:3])}; restore the dataset folder the run trained on."
        )
    prepare = batch_preparer(loaded.device, loaded.mean_std, None)
    size, batch = loaded.config.resizing(), batch_size or loaded.config.batch_size
    k = len(loaded.classes) if len(loaded.classes) <= MAX_FULL else TOP_K
    parts, keep, bad = [], [], []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start : start + CHUNK]
        failed: list[tuple[int, str]] = []
        images = decode_images([p for p, _ in chunk], size, bad=failed)  # (n, 3, S, S) uint8
        ok = np.ones(len(chunk), dtype=bool)
        for i, reason in failed:
            ok[i] = False
            bad.append((loaded.val_paths[start + i], reason))
        targets = torch.tensor([t for _, t in chunk])[torch.from_numpy(ok)]
        parts.append(predict_tensors(loaded.model, images[torch.from_numpy(ok)], targets, prepare, batch, k))
        keep.append(np.flatnonzero(ok) + start)
        if progress:
            progress(min(start + CHUNK, len(samples)), len(samples))
    kept = np.concatenate(keep)
    if not len(kept):
        raise ValueError(f"None of the {len(samples)} validation images decodes, e.g. {bad[0][1]}.")
    preds, loss, top_c, top_p = (np.concatenate(x) for x in zip(*parts))
    return Predictions(loaded.run_id, which, key, list(loaded.classes), np.array(loaded.val_paths, dtype=str)[kept],
                       np.array(loaded.val_targets, dtype=np.int64)[kept], preds, loss, top_c, top_p, bad)  # fmt: skip


def predict_tensors(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, prepare, batch_size: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(preds, loss, top classes, top probabilities) of decoded uint8 images (N, 3, S, S), in batches."""
    out = []
    model.eval()
    with torch.inference_mode():
        for x, y in zip(images.split(batch_size), targets.split(batch_size)):
            logits = model(prepare(x, False)).float()  # (B, K)
            y = y.to(logits.device)
            log_p = F.log_softmax(logits, dim=1)
            top_p, top_c = log_p.topk(k, dim=1)  # ranked, (B, k)
            loss = -log_p.gather(1, y[:, None])[:, 0]
            out.append((logits.argmax(1), loss, top_c, top_p.exp()))
    if not out:
        empty = np.zeros((0, k))
        return np.zeros(0, np.int64), np.zeros(0, np.float32), empty.astype(np.int64), empty.astype(np.float32)
    return tuple(torch.cat(col).cpu().numpy() for col in zip(*out))  # type: ignore[return-value]

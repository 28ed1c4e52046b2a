"""`python -m lib explain RUN_ID IMAGE [IMAGE ...]`: where a run's model looks in each image, as .npy maps."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lib.commands.options import EXPLAIN_METHODS as METHODS
from lib.training.batches import decode_one
from lib.training.checkpoint import LoadedRun, load_model
from lib.training.device import resolve_device


def run(args) -> int:
    from lib.evaluation.attributions import gradcam_unavailable

    loaded = load_model(args.run_id, runs_dir=args.runs_dir, which=args.which, device=resolve_device(args.device))
    method = args.method or ("gradcam" if gradcam_unavailable(loaded.model, loaded.config.image_size) is None else "ig")
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "gradcam" and (why := gradcam_unavailable(loaded.model, loaded.config.image_size)):
        raise ValueError(why)
    target = class_index(loaded, args.target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for path, stem in zip(args.images, unique_stems(args.images)):
        try:
            image = decode_one(path, loaded.config.resizing())
        except (ValueError, OSError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            failed.append({"path": path, "error": str(e)})
            continue
        done.append(explain_one(loaded, path, image, method, target, out / f"{stem}.npy", args.json))
    if args.json:
        print(json.dumps({"run_id": args.run_id, "method": method, "images": done, "errors": failed}))
    return 0 if not failed else 1 if done else 2


def explain_one(loaded: LoadedRun, path: str, image, method: str, target: int | None, npy: Path, quiet: bool) -> dict:
    """Explain one decoded image, save its map to npy, and return its JSON entry (printing a line unless quiet)."""
    from lib.evaluation.attributions import explain

    result = explain(loaded, image, method, target)
    np.save(npy, result.heatmap)
    classes = loaded.classes
    entry = {
        "path": path,
        "predicted": classes[result.prediction.predicted],
        "probabilities": [{"class": classes[i], "p": p} for i, p in result.prediction.top(5)],
        "target": classes[result.target],
        "heatmap": str(npy),
    }
    if not quiet:
        p = result.prediction.top(1)[0][1]
        print(f"{path}: predicted {entry['predicted']} (p={p:.3f}), {method} for {entry['target']} -> {npy}")
    return entry


def class_index(loaded: LoadedRun, target: str | None) -> int | None:
    """A --target given as a class name or index, as an index. Raises ValueError for one the run lacks."""
    if target is None:
        return None
    if target in loaded.classes:
        return loaded.classes.index(target)
    if target.isdigit() and int(target) < len(loaded.classes):
        return int(target)
    raise ValueError(
        f"Unknown target class {target!r}; choose one of {', '.join(loaded.classes)} or 0 to {len(loaded.classes) - 1}."
    )


def unique_stems(paths: list[str]) -> list[str]:
    """Each path's file stem, with _2, _3, ... added where two images share one (a/x.png, b/x.png)."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems

"""The one module that wraps lib functions in Streamlit's caches. Pages call these; lib stays plain.

`st.cache_resource` values are shared by every session: they are only ever read (an index) or
owned by a background job that nobody else mutates.
"""

from __future__ import annotations

import base64
import copy
import io
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image

from lib.app import sessions, text
from lib.app.jobs import BackgroundJob
from lib.data import explore, images
from lib.data.index import DatasetIndex, build_index, verify_index
from lib.data.marks import apply_marks, read_marks, session_marks_root
from lib.evaluation.embeddings import embed_run, embedding_frame
from lib.pixels.channels import load_upload
from lib.pixels.resize import resize
from lib.pixels.stats import ChannelStats, Progress, StatsConfig, channel_stats
from lib.runs import compare
from lib.runs.store import RunStore
from lib.settings import Settings, cache_dir, load_settings, runs_dir
from lib.training.batches import decode_one
from lib.training.checkpoint import LoadedRun, load_model
from lib.training.device import resolve_device

if TYPE_CHECKING:  # imported where used: torchmetrics and Captum (with matplotlib) load only once a page needs them
    from lib.evaluation.attributions import ModelFacts
    from lib.evaluation.metrics import Metrics
    from lib.evaluation.predictions import Predictions, Progress


def settings() -> Settings:
    """Mode and limits from the environment and `.streamlit/secrets.toml` (a missing file is fine).

    Not cached: it is cheap, and a test or an operator may change the environment between runs.
    """
    try:
        secrets = st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file is the normal local case
        secrets = {}
    loaded = load_settings(secrets)
    images.set_limits(loaded.max_image_pixels, loaded.max_image_frames)
    text.hide_paths(server_folders(loaded) if loaded.deployed else [])
    return loaded


def server_folders(s: Settings) -> list[str]:
    """Folders of this server that deployed-mode text never names."""
    import sys

    folders = [cache_dir(), runs_dir(), Path(__file__).resolve().parents[2], Path(sys.prefix), Path.home()]
    return [str(f) for f in folders] + [str(Path(f).resolve()) for f in folders] + [s.builtin_root]


@st.cache_resource(show_spinner=False)
def run_store(root: str) -> RunStore:
    """The run store at root (schema, WAL) opened once per server. It holds a path and opens a
    connection per call, so sharing it is safe; runs, metrics and models are never cached.
    Opening it also ends trainers a previous server left behind (marked interrupted).

    Raises:
        StoreError: when the runs folder can neither be created nor read (one sentence).
    """
    from lib.training.runner import interrupt_orphans

    store = RunStore(root)
    if not store.read_only:
        interrupt_orphans(store)
    return store


_last_sweep = [0.0]


def sweep_idle_sessions(current_session: str) -> list[str]:
    """At most once a minute per server: delete the uploads of sessions idle past the limit."""
    now = time.time()
    if now - _last_sweep[0] < 60:
        return []
    _last_sweep[0] = now
    removed = [s for s in sessions.idle_sessions(settings().session_idle_minutes * 60, now) if s != current_session]
    store = run_store(str(runs_dir()))
    swept = []
    for session_id in removed:
        store.delete_owner_runs(session_id)  # asks its running runs to stop
        if store.running(session_id):
            continue  # a trainer still reads these files: remove them on a later sweep, once it has stopped
        sessions.remove_session(session_id)
        swept.append(session_id)
    return swept


@st.cache_resource(show_spinner="Indexing the dataset (headers only)…", max_entries=16)
def header_index(root: str) -> DatasetIndex:
    # Shared by every visitor: marks (each visitor's own when deployed) are applied by current_index.
    return build_index(root, marks=False)


def marks_base() -> Path | None:
    """Where this visitor's marks and health findings live: their session's folder when deployed, else the
    default (`<cache>/health`, shared with the command line)."""
    return session_marks_root(st.session_state.get("session_id")) if settings().deployed else None


@st.cache_resource(show_spinner=False)
def _verify_jobs() -> dict[str, BackgroundJob]:
    # One registry for the server: a dataset is checked once, whoever asked first.
    return {}


_jobs_lock = threading.Lock()


def verify_job(root: str, *, start: bool = False) -> BackgroundJob | None:
    """The full check of a dataset (decode every image once in the background); started when asked."""
    with _jobs_lock:
        jobs = _verify_jobs()
        if root not in jobs and start:
            index = header_index(root)
            jobs[root] = BackgroundJob(lambda progress: verify_index(index, progress=progress), name=f"verify:{root}")
        return jobs.get(root)


def current_index(root: str, *, marked: bool = False) -> DatasetIndex:
    """The fully checked index once its background check is done, the header index until then; without the
    files this visitor marked to leave out (`left_out` names them), or with them when `marked`."""
    job = verify_job(root)
    index = job.result if job and job.done and job.result is not None else header_index(root)
    return index if marked else apply_marks(index, read_marks(root, marks_base()))


def forget_dataset(root: str) -> None:
    """Drop a dataset's cached index and check, so the next read rescans the folder."""
    header_index.clear(root)
    with _jobs_lock:
        _verify_jobs().pop(root, None)
    header_frame.clear()


@st.cache_data(show_spinner=False, max_entries=16)
def header_frame(root: str, verified: bool):
    return explore.header_frame(current_index(root))


@st.cache_data(show_spinner=False, max_entries=2048)
def thumbnail(path: str, size: int = 128) -> Image.Image | str:
    """A decoded thumbnail, or the reason the file cannot be decoded."""
    try:
        img = images.load_rgb(path)
    except ValueError as e:
        return str(e)
    img.thumbnail((size, size))
    return img


@st.cache_data(show_spinner=False, max_entries=2048)
def thumbnail_uri(path: str, size: int = 128) -> str:
    """A thumbnail as a `data:` URI (JPEG), or the reason the file cannot be decoded.

    A URI travels inside the page, so a thumbnail never 404s the way a media-file URL does once
    Streamlit has dropped the previous page's files after a page switch.
    """
    img = thumbnail(path, size)
    if isinstance(img, str):
        return img
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# Dataset statistics are computed outside any st.cache_* function so the page's progress bar can be
# driven from a callback (Streamlit replays elements drawn inside cached functions); they are kept
# in one shared, bounded store keyed by the dataset's fingerprint and the options that change them.
MAX_STORED_STATS = 32


@st.cache_resource
def _stats_store() -> tuple[OrderedDict, threading.Lock]:
    # Shared by every session; entries are never mutated, only added and evicted.
    return OrderedDict(), threading.Lock()


@st.cache_data(ttl=30, show_spinner=False)
def _fingerprint(root: str, num_images: int, _index: DatasetIndex) -> str:
    # fingerprint() stats every file: on every rerun that is slow for big datasets, so reuse it briefly.
    return _index.fingerprint()


def _key(index: DatasetIndex, size: int | None) -> tuple:
    return (index.root, _fingerprint(index.root, index.num_images, index), size)


def stored_stats(index: DatasetIndex, size: int | None) -> ChannelStats | None:
    """The dataset's statistics if computed before for these options (a copy), else None."""
    store, lock = _stats_store()
    with lock:
        found = store.get(_key(index, size))
    return copy.deepcopy(found) if found is not None else None


def compute_stats(index: DatasetIndex, size: int | None, progress: Progress | None = None) -> ChannelStats:
    """Compute (or reuse) exact statistics of every image in `index`, reporting progress.

    Raises:
        ValueError: when no image of the dataset decodes.
    """
    key = _key(index, size)
    found = stored_stats(index, size)
    if found is not None:
        return found
    stats = channel_stats([p for p, _ in index.samples], StatsConfig(size=size), progress)
    store, lock = _stats_store()
    with lock:
        store[key] = stats
        while len(store) > MAX_STORED_STATS:
            store.popitem(last=False)
    return copy.deepcopy(stats)


@st.cache_data(show_spinner=False, max_entries=256)
def run_curves(root: str, run_id: str, heartbeat: float | None, batch_size: int, smoothing: float, max_points: int):
    """A run's chart data (lib.runs.compare.curves). Keyed by its heartbeat, which every write moves, so a
    finished run's steps are read and downsampled once per smoothing, a running one again after it wrote."""
    store = run_store(root)
    return compare.curves(
        store.steps(run_id), store.epochs(run_id), batch_size=batch_size, smoothing=smoothing, max_points=max_points
    )


@st.cache_data(show_spinner=False, max_entries=256)
def run_metrics(root: str, run_id: str, heartbeat: float | None) -> pd.DataFrame:
    """A run's extra metrics (RunStore.metrics), keyed by its heartbeat as run_curves is."""
    return run_store(root).metrics(run_id)


# --- Evaluate: a run's predictions and metrics ----------------------------------------------------
# Predicting reports progress to the page, so it runs outside st.cache_*; the results are kept per
# (runs folder, run, checkpoint key) in one shared, bounded store and are never mutated. The predictions
# themselves are stored with the run on disk, so a restarted server only recomputes the metrics.
MAX_EVALUATIONS = 8


class Evaluation(NamedTuple):
    predictions: Predictions
    metrics: Metrics


@st.cache_resource
def _evaluation_store() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def _remember(key: tuple, found: Evaluation) -> Evaluation:
    store, lock = _evaluation_store()
    with lock:
        store[key] = found
        while len(store) > MAX_EVALUATIONS:
            store.popitem(last=False)
    return found


def evaluation_key(run_id: str) -> str:
    """Which checkpoint the run has now, and the visitor's marks (cheap: a stat and a small file).
    Raises ValueError when it has none."""
    from lib.evaluation.predictions import predictions_key

    return predictions_key(run_store(str(runs_dir())), run_id, marks_base=marks_base())


def stored_evaluation(run_id: str, key: str) -> Evaluation | None:
    """The evaluation of checkpoint `key` when already in memory or stored with the run, else None."""
    cache_key = (str(runs_dir()), run_id, key)
    store, lock = _evaluation_store()
    with lock:
        found = store.get(cache_key)
    if found is not None:
        return found
    from lib.evaluation.metrics import compute_metrics
    from lib.evaluation.predictions import stored_predictions

    stored = stored_predictions(run_store(str(runs_dir())), run_id)
    if stored is None or stored.key != key:
        return None
    return _remember(cache_key, Evaluation(stored, compute_metrics(stored)))


def evaluate_run(run_id: str, progress: Progress | None = None) -> Evaluation:
    """Predict over the run's validation split (stored with the run) and compute its metrics.

    Raises:
        ValueError: no such run or checkpoint, validation images gone, nothing decodes.
    """
    from lib.evaluation.metrics import compute_metrics
    from lib.evaluation.predictions import run_predictions

    found = run_predictions(
        run_id, runs_dir=runs_dir(), progress=progress, marks_base=marks_base(), settings=settings()
    )
    return _remember((str(runs_dir()), run_id, found.key), Evaluation(found, compute_metrics(found)))


@st.cache_data(show_spinner=False, max_entries=64)
def pr_curves(run_id: str, key: str, classes: tuple[str, ...], _evaluation: Evaluation) -> pd.DataFrame:
    """PR curves of the chosen classes (sorting every score is O(N log N): done once per choice)."""
    from lib.evaluation.metrics import pr_curve

    p, per_class = _evaluation.predictions, _evaluation.metrics.per_class
    frames = []
    for name in classes:
        i = p.classes.index(name)
        curve = pr_curve(p, i).assign(**{"class": name, "label": f"{name} ({per_class['average_precision'][i]:.2f})"})
        frames.append(curve)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@st.cache_data(show_spinner=False, max_entries=8)
def channels_positions(root: str, num_images: int, verified: bool) -> dict[str, int]:
    """Each image's number within its class as the Channels page counts it (relative path -> number),
    so a link from Evaluate opens that exact image there. Keyed by what changes the index."""
    index = current_index(root)
    seen: dict[int, int] = {}
    out = {}
    for path, target in index.samples:
        out[index.relpath(path)] = seen.get(target, 0)
        seen[target] = out[index.relpath(path)] + 1
    return out


# --- Explain: a run's model, its attributions, feature maps and embedding ---------------------------
# The model is shared by every session (st.cache_resource) and only read; Captum adds and removes hooks
# on its modules while it works, so every use holds the model's lock.


def checkpoint_key(run_id: str) -> int:
    """The last checkpoint's mtime (ns): a run that trains on writes a new one, and caches follow it.

    Raises:
        ValueError: when the run has no checkpoint yet.
    """
    path = run_store(str(runs_dir())).files.checkpoint_path(run_id, "last")
    try:
        return path.stat().st_mtime_ns
    except OSError:
        raise ValueError(f"Run {run_id} has no checkpoint yet; wait for its first epoch to end.") from None


@st.cache_resource(show_spinner="Loading the run's model…", max_entries=4)
def _model(run_id: str, key: int) -> tuple[LoadedRun, threading.Lock]:
    return load_model(run_id, runs_dir=runs_dir(), device=resolve_device("auto"), settings=settings()), threading.Lock()


def explain_facts(run_id: str) -> ModelFacts:
    """Classes, split, methods and blocks of run_id's model. Raises ValueError (no checkpoint, bad run)."""
    from lib.evaluation.attributions import model_facts

    loaded, _ = _model(run_id, checkpoint_key(run_id))
    return model_facts(loaded)


@st.cache_data(show_spinner=False, max_entries=256)
def run_image(run_id: str, path: str, size: int) -> np.ndarray | str:
    """A validation image (path relative to the run's root) at the model's size (`size`), resized as the run's
    images were, uint8 (S, S, 3), or why not."""
    loaded, _ = _model(run_id, checkpoint_key(run_id))
    try:
        return decode_one(loaded.image_path(path), loaded.config.resizing()).permute(1, 2, 0).numpy()
    except ValueError as e:
        return f"{path} cannot be read ({e})."


@st.cache_data(show_spinner=False, max_entries=4)
def decoded_upload(data: bytes) -> Image.Image:
    """An uploaded image decoded once (an animation's first frame), not again on every rerun.

    Raises:
        ValueError: when the upload is not an image, or is over the per-image limits (from its header).
    """
    return load_upload(data)


def upload_image(data: bytes, run_id: str) -> np.ndarray:
    """An uploaded image resized as run_id's images were (decode_one's resize), uint8 (S, S, 3).

    Raises:
        ValueError: when the upload is not an image.
    """
    loaded, _ = _model(run_id, checkpoint_key(run_id))
    return np.asarray(resize(decoded_upload(data), loaded.config.resizing())).copy()


@st.cache_data(show_spinner=False, max_entries=512)
def explanation(run_id: str, key: int, image_id: str, _image: np.ndarray, method: str, target: int | None):
    """Prediction and attribution map of one image, cached per (run, checkpoint, image, method, target)."""
    from lib.evaluation.attributions import explain

    loaded, lock = _model(run_id, key)
    with lock:
        return explain(loaded, torch.from_numpy(_image).permute(2, 0, 1), method, target)


@st.cache_data(show_spinner=False, max_entries=128)
def feature_pictures(
    run_id: str, key: int, image_id: str, _image: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Each conv block's activations as one picture (channels in a grid), and the first layer's filters as tiles."""
    from lib.evaluation.attributions import model_input
    from lib.evaluation.features import activation_grid, feature_maps, first_filters, grid

    loaded, lock = _model(run_id, key)
    with lock:
        maps = feature_maps(loaded.model, model_input(loaded, torch.from_numpy(_image).permute(2, 0, 1)))
        filters = first_filters(loaded.model)
    return [activation_grid(m) for m in maps], (grid(filters, 16, 8) if filters is not None else None)


@st.cache_resource(show_spinner=False)
def _embedding_store() -> tuple[OrderedDict, threading.Lock]:
    # Like the stats store: computed outside st.cache_* so the page's progress bar is live.
    return OrderedDict(), threading.Lock()


def stored_embedding(run_id: str, limit: int) -> tuple | None:
    """(frame, model variance, pixel variance, skipped) of run_id's embedding if computed before, else None."""
    store, lock = _embedding_store()
    with lock:
        return store.get((run_id, checkpoint_key(run_id), limit))


def embedding(run_id: str, limit: int, progress=None) -> tuple:
    """The embedding map's data for up to `limit` validation images (computed once per run and checkpoint)."""
    found = stored_embedding(run_id, limit)
    if found is not None:
        return found
    key = checkpoint_key(run_id)
    loaded, lock = _model(run_id, key)
    with lock:
        emb = embed_run(loaded, limit=limit, progress=progress)
    result = (embedding_frame(emb, loaded.classes), emb.model_variance, emb.pixel_variance, emb.skipped)
    store, lock = _embedding_store()
    with lock:
        store[(run_id, key, limit)] = result
        while len(store) > 8:
            store.popitem(last=False)
    return result


@st.cache_data(ttl=5, show_spinner=False, max_entries=256)
def model_facts(name: str) -> dict:
    """{name, params, default_size, weights, cached} of a model by name (`python -m lib models`), and
    `choices`: DEFAULT then each weights name, to weights_choice's facts. The cache flags are rechecked every
    few seconds, so a finished download shows."""
    from lib.training.models import model_facts as facts
    from lib.training.models import weights_choice

    d = facts(name)
    d["choices"] = {w: weights_choice(name, w) for w in ("DEFAULT", *d["weights"])} if d["weights"] else {}
    return d


@st.cache_resource(show_spinner=False)
def _weights_jobs() -> dict[str, BackgroundJob]:
    return {}  # one download per weights file for the whole server, whoever asked first


def weights_job(name: str, weights: str = "DEFAULT", *, start: bool = False) -> BackgroundJob | None:
    """The download of a model's weights (a name, or DEFAULT) into torch hub's cache (local mode); started when asked."""
    from lib.training.models import download_with_progress, weights_enum

    weights = weights_enum(name, weights).name  # DEFAULT and its own name: one download
    with _jobs_lock:
        jobs = _weights_jobs()
        if (name, weights) not in jobs and start:
            jobs[(name, weights)] = BackgroundJob(
                lambda p: download_with_progress(name, weights, p), name=f"weights:{name}.{weights}"
            )
        return jobs.get((name, weights))

"""Streamlit caching for the Channels page (to be merged into lib/cache.py by the lead).

Dataset statistics are computed outside any `st.cache_*` function, so the page's progress bar can
be driven from a callback (Streamlit replays elements drawn inside cached functions), and kept in
one shared, bounded store keyed by the dataset's fingerprint and the options that change the answer.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict

import streamlit as st

from lib.index import DatasetIndex, build_index
from lib.stats import ChannelStats, Progress, StatsConfig, channel_stats

MAX_STORED_STATS = 32


@st.cache_data(show_spinner="Indexing the dataset...")
def cached_index(root: str) -> DatasetIndex:
    """The dataset's index (headers only). Stand-in for lib.cache.cached_index on main."""
    return build_index(root)


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

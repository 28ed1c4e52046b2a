"""Streamlit caching for the Train page. Only the store handle is cached: a RunStore holds a folder
path and opens a connection per call, so sharing it between sessions is safe. Runs, metrics and
models are never cached (they change every second, and a trained model must not be shared)."""

from __future__ import annotations

import streamlit as st

from lib.store import RunStore


@st.cache_resource(show_spinner=False)
def run_store(root: str) -> RunStore:
    """The run store at root, created (schema, WAL) once per server."""
    return RunStore(root)

"""Shared fixtures: every test gets its own cache and runs folder, so nothing touches the user's."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp()
    # The sample is generated once per test session into the shared temp base (deterministic).
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(base / "torchscope-cache"))
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(base / "torchscope-runs"))
    monkeypatch.delenv("TORCHSCOPE_MODE", raising=False)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

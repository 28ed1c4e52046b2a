"""Shared fixtures: every test gets its own cache and runs folder, so nothing touches the user's."""

import os
import sys

import pytest


@pytest.fixture(autouse=True)
def _main_module_back():
    """AppTest leaves its page script bound as `__main__`; a forkserver or spawn child started by a later
    test (a DataLoader worker) would re-run that script and die. Give each test pytest's own again."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.getbasetemp()
    # The sample is generated once per test session into the shared temp base (deterministic).
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(base / "torchscope-cache"))
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(base / "torchscope-runs"))
    monkeypatch.delenv("TORCHSCOPE_MODE", raising=False)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

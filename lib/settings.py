"""Where the app keeps its files, the cores it may use, and the one settings object for modes and limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

MODES = ("local", "deployed")


def cache_dir(*, create: bool = True) -> Path:
    """The app's own folder for the sample, extracted archives and exports (TORCHSCOPE_CACHE_DIR);
    created unless `create=False` (a reader that only looks must not need to write there)."""
    path = Path(os.environ.get("TORCHSCOPE_CACHE_DIR") or Path.home() / ".cache" / "torchscope")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """The run store's folder (TORCHSCOPE_RUNS_DIR, default `<cache>/runs`)."""
    path = Path(os.environ.get("TORCHSCOPE_RUNS_DIR") or cache_dir() / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_threads() -> int:
    """The CPU cores this process may use: the default for torch threads and decode workers.

    Here, below every package, so that lib/pixels (which imports no torch) and lib/training share one answer.
    """
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """Mode and limits, validated once. Deployed mode accepts no server path anywhere."""

    mode: str = "local"
    max_upload_mb: int = 200
    max_archive_files: int = 100_000
    max_archive_mb: int = 2048  # declared uncompressed total
    max_total_pixels: int = 2_000_000_000
    max_epochs: int = 100
    max_image_size: int = 512
    max_runs_global: int = 4
    max_runs_per_session: int = 1
    max_runs_per_visitor: int = 4  # across a visitor's tabs (see lib/app/sessions.visitor_id)
    max_run_minutes: int = 24 * 60  # a run is stopped after this long, as `stopped` with the reason
    session_idle_minutes: int = 60
    max_session_mb: int = 20_480  # disk per session: uploads and their extracted files
    max_disk_mb: int = 102_400  # disk for every session's files and exported built-ins together
    max_image_pixels: int = 89_478_485  # per image, checked from its header before decoding (Pillow's default)
    max_image_frames: int = 1_000  # per animated image (GIF, WebP, APNG, TIFF pages)
    builtin_root: str = ""  # deployed mode: the one server folder built-in datasets are read from

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode {self.mode!r}; set TORCHSCOPE_MODE to 'local' or 'deployed'.")
        for f in fields(self):
            if f.type == "int" and getattr(self, f.name) <= 0:
                raise ValueError(f"Setting {f.name} must be a positive number, got {getattr(self, f.name)}.")

    @property
    def deployed(self) -> bool:
        return self.mode == "deployed"


DEPLOYED_DEFAULTS = dict(
    max_upload_mb=50,
    max_archive_files=20_000,
    max_archive_mb=512,
    max_total_pixels=200_000_000,
    max_epochs=10,
    max_image_size=128,
    max_runs_global=2,
    max_runs_per_session=1,
    max_runs_per_visitor=1,
    max_run_minutes=30,
    session_idle_minutes=30,
    max_session_mb=600,
    max_disk_mb=5_120,
    max_image_pixels=16_777_216,
    max_image_frames=100,
)


def load_settings(secrets: Mapping | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `TORCHSCOPE_MODE` / `TORCHSCOPE_<SETTING>` variables, else the secrets' `mode` and
    keys of the same names; the environment wins. Deployed mode starts from stricter defaults."""
    env = os.environ if env is None else env
    secrets = dict(secrets or {})
    mode = env.get("TORCHSCOPE_MODE") or secrets.get("mode") or "local"
    values: dict = dict(DEPLOYED_DEFAULTS) if mode == "deployed" else {}
    for f in fields(Settings):
        if f.name == "mode":
            continue
        raw = env.get(f"TORCHSCOPE_{f.name.upper()}", secrets.get(f.name))
        if raw is not None and f.type == "str":
            values[f.name] = str(raw)
        elif raw is not None:
            try:
                values[f.name] = int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"Setting {f.name} must be a whole number, got {raw!r}.") from None
    return Settings(mode=mode, **values)

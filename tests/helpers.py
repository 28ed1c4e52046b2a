"""Small dataset builders shared by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_imagefolder(root: Path, classes=("a", "b"), per_class: int = 5, size=(16, 16), seed: int = 0) -> Path:
    """An ImageFolder of random RGB PNGs; returns root."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{c}_{i}.png")
    return root


def write_truncated_jpeg(path: Path, size=(64, 64)) -> Path:
    """A JPEG cut in half: its header reads fine, decoding fails."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A .zip archive in memory holding members {name: data}."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A small random RGB PNG, encoded."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def run_unprivileged(code: str, *, env: dict | None = None, timeout: float = 120):
    """Run `python -c code` from the repo as a user without write access to root-owned files.

    Permission tests need it: root ignores a folder's mode bits. As root, the code runs as `nobody`
    (uid 65534) through setpriv; otherwise as the current user, for whom chmod already applies.
    """
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        import pytest

        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(
        cmd, cwd=repo, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def world_readable_dir(prefix: str) -> Path:
    """A fresh folder under /tmp that another user can enter and read (pytest's tmp_path is private)."""
    import os
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path

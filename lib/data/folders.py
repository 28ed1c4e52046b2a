"""Publishing a folder atomically, so concurrent sessions never see half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_folder(final: Path, build: Callable[[Path], None], marker: str) -> None:
    """Run `build(tmp)` in a temporary folder beside `final`, then rename it into place.

    `build` must write the file `marker` last: a folder without it is unfinished. When another
    caller published `final` first, theirs is kept; a stale unfinished `final` is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another caller won the race, or a stale unfinished folder is in the way
            if not (final / marker).is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

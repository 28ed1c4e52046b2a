"""Files a user marked to leave out of a dataset, and the per-dataset folder beside the cache that holds them.

Marks are a plain text list of paths relative to the dataset's root (POSIX), one a line, in
`<marks folder>/<dataset key>/marks.txt`. The marks folder is TORCHSCOPE_MARKS_DIR, else `<cache>/health`;
a deployed app gives each visitor their own (under their session folder) and passes it to the trainers it
starts. `apply_marks` leaves the marked files out of an index, so training, statistics and evaluation all
skip the same files and can say how many.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from lib.settings import cache_dir

MARKS_FILE = "marks.txt"


def marks_root() -> Path:
    """Where per-dataset marks and findings live: TORCHSCOPE_MARKS_DIR, else `<cache>/health`."""
    return Path(os.environ.get("TORCHSCOPE_MARKS_DIR") or cache_dir(create=False) / "health")


def session_marks_root(session_id: str | None) -> Path | None:
    """A deployed visitor's own marks and findings, under their session's folder (lib/app/sessions.py);
    None for anything that is not a session id (never a path)."""
    if not (session_id and len(session_id) == 32 and all(c in "0123456789abcdef" for c in session_id)):
        return None
    return cache_dir() / "sessions" / session_id / "health"


def dataset_folder(root: str | Path, base: Path | None = None) -> Path:
    """The folder of one dataset's marks and findings, named by a hash of its absolute root."""
    key = hashlib.sha1(os.path.abspath(str(root)).encode()).hexdigest()[:16]
    return (base or marks_root()) / key


def read_marks(root: str | Path, base: Path | None = None) -> list[str]:
    """The marked paths of a dataset (relative, POSIX), sorted; none when nothing was marked, or when this
    user may not read the marks folder (indexing a dataset must not need the cache)."""
    path = dataset_folder(root, base) / MARKS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return sorted({line.strip() for line in lines if line.strip()})


def write_marks(root: str | Path, paths, base: Path | None = None) -> list[str]:
    """Save the marked paths (replacing the old list, written whole then renamed); returns them sorted."""
    marks = sorted({p.strip() for p in paths if p.strip()})
    folder = dataset_folder(root, base)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MARKS_FILE}.{os.getpid()}"
    tmp.write_text("".join(f"{p}\n" for p in marks), encoding="utf-8")
    tmp.replace(folder / MARKS_FILE)
    return marks


def toggle_marks(root: str | Path, paths, marked: bool, base: Path | None = None) -> list[str]:
    """Mark (marked=True) or unmark these paths, keeping the others; returns the new list."""
    current = set(read_marks(root, base))
    current = current | set(paths) if marked else current - set(paths)
    return write_marks(root, current, base)


def apply_marks(index, marks) -> object:
    """A copy of a DatasetIndex without the marked files; `left_out` names those it held."""
    marked = set(marks)
    if not marked:
        return index
    rel = [index.relpath(p) for p, _ in index.samples]
    keep = [i for i, r in enumerate(rel) if r not in marked]
    out = replace(
        index,
        samples=[index.samples[i] for i in keep],
        headers=[index.headers[i] for i in keep] if index.headers else [],
        left_out=sorted({*index.left_out, *(r for r in rel if r in marked)}),
    )
    out.empty_classes = [c for c, n in out.class_counts().items() if n == 0 and c not in out.unreadable_folders]
    return out

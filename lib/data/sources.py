"""Data sources: the sample, a folder, a .zip (path or upload), a torchvision built-in.

Every source resolves to one ImageFolder folder on disk; nothing downstream knows which it was.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from lib.data.folders import disk_left
from lib.settings import Settings, cache_dir

KINDS = ("sample", "folder", "zip", "upload", "builtin")


@dataclass(frozen=True)
class Source:
    """A data source as chosen in the sidebar or written in the URL.

    kind: one of KINDS. value: the folder or .zip path, the upload's stored path, or the built-in's
    name. root: for a built-in, the folder holding its files.
    """

    kind: str = "sample"
    value: str = ""
    root: str = ""

    def label(self) -> str:
        if self.kind == "sample":
            return "Built-in sample (shapes)"
        if self.kind == "builtin":
            return f"{self.value} from {self.root}" if self.root else self.value
        if self.kind == "upload":
            return f"Upload {upload_name(self.value)}"
        return self.value


def resolve_root(source: Source, settings: Settings, session_folder: Path | None = None) -> Path:
    """The ImageFolder folder for a source, extracting or exporting it into the cache when needed.

    An upload is extracted under its session's folder, so its path (and every cache keyed by it)
    belongs to that session alone.

    Raises:
        ValueError: when the source cannot be used, with what to do instead.
    """
    if source.kind not in KINDS:
        raise ValueError(f"Unknown data source {source.kind!r}; choose one of {', '.join(KINDS)}.")
    if settings.deployed and source.kind in ("folder", "zip"):
        raise ValueError("This deployment does not open server paths; upload a .zip or use the sample.")
    if source.kind == "sample":
        return sample_root_or_raise()
    if source.kind == "folder":
        return _existing_folder(source.value)
    if source.kind == "upload" and not _inside(source.value, session_folder):
        raise ValueError("That upload belongs to another session; upload the archive again.")
    if source.kind in ("zip", "upload"):
        from lib.data import archive

        dest = session_folder / "archives" if source.kind == "upload" and session_folder else cache_dir() / "archives"
        max_bytes = settings.max_archive_mb * 2**20
        if settings.deployed:  # the disk quota bounds what extraction may write (each member to its declared size)
            max_bytes = min(max_bytes, disk_left(session_folder or dest, settings.max_session_mb, settings.max_disk_mb))
        return archive.extract_zip(source.value, dest, max_files=settings.max_archive_files, max_bytes=max_bytes)
    from lib.data import builtins as builtin_datasets

    root = settings.builtin_root if settings.deployed else source.root
    if not root:
        raise ValueError("This deployment has no built-in datasets; upload a .zip or use the sample.")
    return builtin_datasets.export_builtin(source.value, root, cache_dir() / "builtins")


def _inside(path: str, folder: Path | None) -> bool:
    """True when path resolves to somewhere under folder (an upload stays in its session)."""
    return folder is not None and Path(path).resolve().is_relative_to(Path(folder).resolve())


def sample_root_or_raise() -> Path:
    from lib.data import sample

    try:
        return sample.sample_root()
    except OSError as e:
        raise ValueError(
            f"Could not write the sample dataset ({e.strerror}); set TORCHSCOPE_CACHE_DIR to a writable folder."
        ) from None


def cli_root(arg: str) -> Path:
    """The folder for a command-line SOURCE: a folder, a .zip, or `sample`."""
    from dataclasses import replace

    from lib.settings import load_settings

    settings = replace(load_settings(), mode="local")  # the command line runs on this machine's files
    if arg == "sample":
        return resolve_root(Source("sample"), settings)
    if os.path.isdir(arg):
        return _existing_folder(arg)
    if not os.path.exists(arg):
        raise ValueError(f"{arg} does not exist; give an ImageFolder folder or a .zip of one.")
    if not os.path.isfile(arg):  # a FIFO or device (/dev/zero) would block or never end
        raise ValueError(f"{arg} is neither a folder nor a regular file; give an ImageFolder folder or a .zip of one.")
    return resolve_root(Source("zip", arg), settings)


def _existing_folder(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{path} does not exist; give the path of an ImageFolder folder.")
    if not p.is_dir():
        raise ValueError(f"{path} is not a folder; give a folder with one sub-folder per class, or choose .zip.")
    if not os.access(p, os.R_OK | os.X_OK):
        raise ValueError(f"{path} cannot be read; check its permissions.")
    return p.resolve()


UPLOAD_ID_LEN = 12  # hex characters of the content hash (the stored name's start) that name an upload in a link


def upload_path(data: bytes, name: str, session_dir: Path) -> Path:
    """Store an uploaded archive under the session's folder, named by its content hash."""
    path = upload_target(data, name, session_dir)
    session_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return path


def upload_target(data: bytes, name: str, session_dir: Path) -> Path:
    """Where upload_path stores an upload: `<content hash>-<name>`, the name made safe and short."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    name = Path(name).name.replace("\\", "_") or "upload.zip"  # a browser-sent name is never a path
    stem, suffix = os.path.splitext(name)
    # File systems allow 255 bytes a name: a long browser-sent name is cut (in characters, safely).
    while len(f"{digest}-{stem}{suffix[:16]}".encode()) > 200:
        stem = stem[:-1]
    return session_dir / f"{digest}-{stem}{suffix[:16]}"


def upload_id(path: str) -> str:
    """The short id of a stored upload (its content hash), never a server path."""
    return Path(path).name[:UPLOAD_ID_LEN]


def upload_name(path: str) -> str:
    """The name the user's file had (the stored name less its hash prefix)."""
    return Path(path).name.split("-", 1)[-1]


def find_upload(short_id: str, uploads: Path | None) -> Path | None:
    """The upload of this session whose id is short_id, or None (an id is hex only, never a path)."""
    if uploads is None or len(short_id) != UPLOAD_ID_LEN or not all(c in "0123456789abcdef" for c in short_id):
        return None
    if not uploads.is_dir():
        return None
    return next((p for p in sorted(uploads.iterdir()) if p.name[:UPLOAD_ID_LEN] == short_id), None)


def source_from_params(params: dict, settings: Settings, uploads: Path | None = None) -> tuple[Source, str | None]:
    """The source a URL names (`?source=folder&path=...`), or the sample with a reason when it can't be used.

    `?source=upload&id=...` names an upload by its short id, found only among `uploads` (this session's).
    """
    kind = params.get("source", "sample")
    if kind == "sample":
        return Source("sample"), None
    if kind == "upload":
        found = find_upload(params.get("id", ""), uploads)
        if found is None:
            return Source("sample"), "The link names an upload of another session; upload the archive again."
        return Source("upload", str(found)), None
    if kind not in KINDS:
        return Source("sample"), f"Unknown source {kind!r} in the link; showing the sample."
    if settings.deployed and kind in ("folder", "zip"):
        return Source("sample"), "This deployment does not open server paths; showing the sample."
    if kind == "builtin":
        root = "" if settings.deployed else params.get("root", "")
        return Source("builtin", params.get("name", ""), root), None
    return Source(kind, params.get("path", "")), None


def source_to_params(source: Source) -> dict:
    """Query parameters that reproduce a source in a link (an upload by its short id, within its session)."""
    if source.kind == "upload":
        return {"source": "upload", "id": upload_id(source.value)}
    if source.kind == "builtin":
        return {"source": "builtin", "name": source.value, **({"root": source.root} if source.root else {})}
    if source.kind in ("folder", "zip"):
        return {"source": source.kind, "path": source.value}
    return {"source": "sample"}


def check_dataset_limits(num_images: int, total_pixels: int, settings: Settings) -> None:
    """Refuse a dataset over this deployment's limits.

    Raises:
        ValueError: naming the limit, and what to do.
    """
    if num_images > settings.max_archive_files:
        raise ValueError(
            f"The dataset has {num_images:,} images, over this app's limit of {settings.max_archive_files:,}; use a smaller subset."
        )
    if total_pixels > settings.max_total_pixels:
        raise ValueError(
            f"The dataset has {total_pixels:,} pixels in all, over this app's limit of {settings.max_total_pixels:,}; "
            "downscale the images or use fewer."
        )

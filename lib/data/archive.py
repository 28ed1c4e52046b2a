"""Extracting a .zip of an ImageFolder safely into the app's cache.

An archive is untrusted input. Before anything is written, the central directory is checked:
every member name must stay inside the extraction folder (no `..`, no absolute or drive paths, no
symbolic links), and the member count and declared uncompressed total must be within the limits.
While extracting, each member is stream-copied with a byte budget of its declared size, so a
member that inflates past what it declares (a zip bomb) is refused without being written.

Layout: `dest_parent/<first 16 hex of the archive's sha256>/` holds the extracted members and a
marker written last; the dataset root is that folder or a folder inside it (see `_dataset_root`).
Extraction happens in a temporary folder beside it and is renamed into place, so concurrent
callers never see a half-extracted archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from lib.data.folders import publish_folder
from lib.data.images import is_image_file

MARKER = ".torchscope-extracted"  # hidden: the index never lists it
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # the safe, normalised path components
    is_dir: bool


def extract_zip(path: str | os.PathLike, dest_parent: Path, *, max_files: int, max_bytes: int) -> Path:
    """Extract an ImageFolder .zip into the cache (once) and return the dataset root.

    Args:
        path: the .zip file.
        dest_parent: the folder that holds extracted archives; nothing is written elsewhere.
        max_files: most files (junk not counted) the archive may hold.
        max_bytes: most uncompressed bytes, as declared in the central directory, it may hold.

    Returns:
        The folder with one sub-folder per class.

    Raises:
        ValueError: a one-sentence reason (not a zip, unsafe member, over a limit, no class folders).
    """
    path = Path(path)
    members = _checked_members(path, max_files=max_files, max_bytes=max_bytes)
    root_parts = _dataset_root(members)
    final = Path(dest_parent) / _sha256_prefix(path)
    if not (final / MARKER).is_file():
        _extract_atomically(path, members, root_parts, final)
    rel = json.loads((final / MARKER).read_text())["root"]
    return final.joinpath(*PurePosixPath(rel).parts) if rel else final


def extract_all(path: str | os.PathLike, dest: Path, *, max_files: int, max_bytes: int) -> list[tuple[str, ...]]:
    """Check an untrusted .zip by the same rules as extract_zip and write every member under dest.

    Args:
        path: the .zip file.
        dest: a folder that does not exist yet; nothing is written outside it.
        max_files, max_bytes: as for extract_zip.

    Returns:
        The path parts of every file written (junk such as __MACOSX left out).

    Raises:
        ValueError: a one-sentence reason (not a zip, unsafe member, over a limit, damaged or a bomb).
    """
    path = Path(path)
    members = _checked_members(path, max_files=max_files, max_bytes=max_bytes)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for m in members:
            _extract_member(zf, raw, m, dest, path.name)
    return [m.parts for m in members if not m.is_dir]


def _checked_members(path: Path, *, max_files: int, max_bytes: int) -> list[_Member]:
    """Read and check the central directory; return the members to extract (junk left out)."""
    infos = _read_infos(path)
    members = [_checked_member(path, info) for info in infos]
    kept = [m for m in members if not _is_junk(m.parts)]
    files = [m for m in kept if not m.is_dir]
    # Folders count too: each costs an inode, and 200,000 empty ones are no dataset.
    if len(kept) > max_files:
        raise ValueError(
            f"{path.name} holds {len(files):,} files and {len(kept) - len(files):,} folders, over the limit of "
            f"{max_files:,} entries; split it into smaller archives."
        )
    declared = sum(m.info.file_size for m in files)
    if declared > max_bytes:
        raise ValueError(
            f"{path.name} unpacks to {declared / 2**20:,.1f} MiB, over the limit of {max_bytes / 2**20:,.1f} MiB; "
            "use a smaller archive or open the folder directly."
        )
    return kept


def _read_infos(path: Path) -> list[zipfile.ZipInfo]:
    if not path.exists():
        raise ValueError(f"{path} does not exist; give the path of a .zip of an ImageFolder folder.")
    if not path.is_file():  # a FIFO or device (/dev/zero) would block or never end
        raise ValueError(f"{path} is not a regular file; give the path of a .zip of an ImageFolder folder.")
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ValueError(
            f"{path.name} is not a .zip archive (or it is damaged); give a .zip of an ImageFolder folder."
        ) from None


def _checked_member(path: Path, info: zipfile.ZipInfo) -> _Member:
    """Refuse a member that could write outside the extraction folder, is a link, or is encrypted."""
    name = info.filename
    mode = info.external_attr >> 16
    refuse = None
    if stat.S_ISLNK(mode):
        refuse = "is a symbolic link"
    elif info.flag_bits & 0x1:
        refuse = "is encrypted"
    elif "\\" in name or _DRIVE.match(name) or name.startswith("/") or "\0" in name:
        refuse = "has an absolute or Windows-style path"
    elif ".." in name.split("/"):
        refuse = "has a '..' path component"
    if refuse:
        raise ValueError(
            f"{path.name} was refused because member {name!r} {refuse}; re-create the archive from a plain folder."
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    return _Member(info, parts, name.endswith("/") or not parts)


def _is_junk(parts: tuple[str, ...]) -> bool:
    """macOS resource forks and Finder files, which are never data, and our marker's name."""
    if parts[:1] == (MARKER,):  # would clash with our own marker
        return True
    return not parts or "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _dataset_root(members: list[_Member]) -> tuple[str, ...]:
    """The path inside the archive of the folder that holds the class folders.

    Rule: while a level holds exactly one folder and no image files, and that folder does not
    itself hold image files, descend into it. A folder holding images is a class folder, so
    `cats/1.jpg` stays a one-class dataset with class `cats`, and `data/train/cats/1.jpg` roots at
    `data/train`. Other files (a README) beside the single folder do not stop the descent.
    Ambiguity: a chain of single folders ending in images reads as a one-class dataset of the last
    folder, so `cats/2019/1.jpg` gets class `2019` (as `data/train/cats/1.jpg` gets `cats`); a
    one-class dataset that should be called `cats` needs some images directly in `cats/`.

    Raises:
        ValueError: when the root holds no folders (images loose at the top, or no files at all).
    """
    root: tuple[str, ...] = ()
    while True:
        folders, images = _children(members, root)
        if len(folders) == 1 and not images:
            only = root + (next(iter(folders)),)
            if not _children(members, only)[1]:
                root = only
                continue
        if not folders:
            raise ValueError("The archive has no class folders; zip a folder that holds one sub-folder per class.")
        return root


def _children(members: list[_Member], prefix: tuple[str, ...]) -> tuple[set[str], bool]:
    """The folder names directly under prefix, and whether any image file sits directly in it."""
    n = len(prefix)
    folders: set[str] = set()
    images = False
    for m in members:
        if m.parts[:n] != prefix or len(m.parts) == n:
            continue
        if len(m.parts) > n + 1 or m.is_dir:
            folders.add(m.parts[n])
        elif is_image_file(m.parts[n]):
            images = True
    return folders, images


def _sha256_prefix(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _extract_atomically(path: Path, members: list[_Member], root: tuple[str, ...], final: Path) -> None:
    """Extract into a temporary folder beside `final`, write the marker last, then rename into place."""

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            for m in members:
                _extract_member(zf, raw, m, tmp, path.name)
        (tmp / MARKER).write_text(json.dumps({"root": "/".join(root)}))

    publish_folder(final, build, MARKER)


def _extract_member(zf: zipfile.ZipFile, raw: BinaryIO, m: _Member, dest: Path, archive: str) -> None:
    """Write one member under dest; refuse the archive if the member is damaged or inflates past its size."""
    target = dest.joinpath(*m.parts)
    try:
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)  # fails when a file of that name came first
        with open(target, "wb") as out:
            if m.info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                _inflate(raw, m.info, out)
            else:  # bzip2/lzma: zipfile stops at the declared size and checks the CRC itself
                with zf.open(m.info) as src:
                    shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, OSError, zlib.error) as e:
        # An OSError's text names the server folder it was written to: keep only its reason.
        why = (e.strerror or type(e).__name__) if isinstance(e, OSError) else e
        raise ValueError(
            f"{archive} was refused because member {m.info.filename!r} cannot be extracted ({why}); "
            "re-create the archive with a standard zip tool."
        ) from None


def _inflate(raw: BinaryIO, info: zipfile.ZipInfo, out: BinaryIO) -> None:
    """Stream a STORED or DEFLATED member into out with a byte budget of its declared size.

    zipfile's own reader silently stops at the declared size; decompressing here lets us see a
    stream that goes on (a bomb with a lying header) and refuse it after at most one chunk.
    """
    raw.seek(_data_offset(raw, info))
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, budget, crc = info.compress_size, info.file_size, 0
    while left > 0:
        pending = raw.read(min(_CHUNK, left))
        if not pending:
            raise zipfile.BadZipFile("its data is cut short")
        left -= len(pending)
        while pending:  # max_length keeps memory at one chunk however well the data compresses
            data = inflater.decompress(pending, _CHUNK) if inflater else pending
            pending = inflater.unconsumed_tail if inflater else b""
            budget -= len(data)
            if budget < 0:
                raise zipfile.BadZipFile(f"it inflates past its declared {info.file_size:,} bytes")
            crc = zlib.crc32(data, crc)
            out.write(data)
    if budget != 0 or crc != info.CRC or (inflater is not None and not inflater.eof):
        raise zipfile.BadZipFile("its size or CRC does not match the central directory")


def _data_offset(raw: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header, whose name and extra lengths may differ."""
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("its local header is missing")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len

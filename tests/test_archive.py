"""lib.data.archive.extract_zip against hostile and awkward archives, all built in tmp_path."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.data.archive import extract_zip

LIMITS = dict(max_files=1000, max_bytes=50 * 2**20)
TWO_GIB = 2 * 2**30


def png_bytes(value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes | None]) -> Path:
    """A zip with one member per name; None makes a directory entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if data is None:
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return path


def tree(root: Path) -> set[str]:
    """Every path under root, relative and POSIX, markers and temp folders included."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "archives"


@pytest.fixture
def outside(tmp_path: Path):
    """Asserts afterwards that nothing appeared beside tmp_path (the parent of every test folder)."""
    before = set(os.listdir(tmp_path.parent))
    yield
    assert set(os.listdir(tmp_path.parent)) == before


def assert_refused(path: Path, dest: Path, match: str, **limits) -> None:
    with pytest.raises(ValueError, match=match) as err:
        extract_zip(path, dest, **(limits or LIMITS))
    msg = str(err.value)
    assert "\n" not in msg and msg.endswith(".")
    assert not dest.exists() or tree(dest) == set()  # nothing left behind, not even a temp folder


# --- the happy paths --------------------------------------------------------------------------


def test_extracts_class_folders_with_contents(tmp_path, dest, outside):
    a, b = png_bytes(10), png_bytes(200)
    z = make_zip(tmp_path / "d.zip", {"cat/1.png": a, "cat/sub/2.png": a, "dog/1.png": b, "empty/": None})
    root = extract_zip(z, dest, **LIMITS)
    assert root.parent == dest and sorted(os.listdir(root)) == [".torchscope-extracted", "cat", "dog", "empty"]
    assert (root / "cat/sub/2.png").read_bytes() == a and (root / "dog/1.png").read_bytes() == b


def test_single_root_folders_stripped_repeatedly(tmp_path, dest):
    z = make_zip(
        tmp_path / "d.zip", {"a/b/c/cat/1.png": png_bytes(), "a/b/c/dog/1.png": png_bytes(), "a/README.txt": b"hi"}
    )
    root = extract_zip(z, dest, **LIMITS)
    assert root.relative_to(dest).parts[1:] == ("a", "b", "c")
    assert sorted(os.listdir(root)) == ["cat", "dog"]


def test_single_class_archive_keeps_its_class_folder(tmp_path, dest):
    # data/ holds one folder and no images: stripped; cat/ holds images: it is the class.
    z = make_zip(tmp_path / "d.zip", {"data/cat/1.png": png_bytes(), "data/cat/2.png": png_bytes()})
    root = extract_zip(z, dest, **LIMITS)
    assert root.name == "data" and os.listdir(root) == ["cat"]


def test_single_chain_ending_in_images_is_one_class_of_the_last_folder(tmp_path, dest):
    # The documented ambiguity: cats/2019/ could be a nested folder of class `cats`, but reads as class `2019`.
    z = make_zip(tmp_path / "d.zip", {"cats/2019/1.png": png_bytes(), "cats/2019/2.png": png_bytes()})
    root = extract_zip(z, dest, **LIMITS)
    assert root.name == "cats" and os.listdir(root) == ["2019"]


def test_macos_junk_stripped(tmp_path, dest):
    z = make_zip(
        tmp_path / "d.zip",
        {
            "ds/cat/1.png": png_bytes(),
            "ds/cat/._1.png": b"\0\5\26\7",
            "ds/cat/.DS_Store": b"x",
            "ds/dog/1.png": png_bytes(),
            "__MACOSX/ds/cat/._1.png": b"\0\5\26\7",
            "__MACOSX/": None,
        },
    )
    root = extract_zip(z, dest, **LIMITS)
    # Junk must neither be written nor stop `ds/` being stripped as the single root.
    assert root.name == "ds"
    assert tree(root.parent) == {".torchscope-extracted", "ds", "ds/cat", "ds/cat/1.png", "ds/dog", "ds/dog/1.png"}


def test_reuses_an_extracted_archive(tmp_path, dest):
    z = make_zip(tmp_path / "d.zip", {"x/cat/1.png": png_bytes(), "x/dog/1.png": png_bytes()})
    first = extract_zip(z, dest, **LIMITS)
    (first / "cat" / "1.png").unlink()  # if it re-extracted, this file would come back
    second = extract_zip(z, dest, **LIMITS)
    assert second == first and not (second / "cat" / "1.png").exists()
    assert len(os.listdir(dest)) == 1  # one folder per archive, no temp leftovers


def test_concurrent_callers_share_one_extraction(tmp_path, dest):
    members = {f"x/c{i % 3}/{i}.png": png_bytes(i) for i in range(60)}
    z = make_zip(tmp_path / "d.zip", members)
    with ThreadPoolExecutor(6) as pool:
        roots = set(pool.map(lambda _: extract_zip(z, dest, **LIMITS), range(6)))
    assert len(roots) == 1 and os.listdir(dest) == [roots.pop().parent.name]  # no temp folders left
    assert len(list(dest.rglob("*.png"))) == 60


def test_different_archives_get_different_folders(tmp_path, dest):
    z1 = make_zip(tmp_path / "1.zip", {"cat/1.png": png_bytes(1), "dog/1.png": png_bytes(1)})
    z2 = make_zip(tmp_path / "2.zip", {"cat/1.png": png_bytes(2), "dog/1.png": png_bytes(2)})
    assert extract_zip(z1, dest, **LIMITS) != extract_zip(z2, dest, **LIMITS)


# --- refused: not a zip ------------------------------------------------------------------------


def test_not_a_zip_one_line_error(tmp_path, dest, outside):
    bad = tmp_path / "photos.zip"
    bad.write_bytes(b"this is plain text, not an archive\n" * 10)
    assert_refused(bad, dest, r"^photos\.zip is not a \.zip archive")


def test_truncated_zip_refused(tmp_path, dest, outside):
    z = make_zip(tmp_path / "d.zip", {"cat/1.png": png_bytes(), "dog/1.png": png_bytes()})
    z.write_bytes(z.read_bytes()[:-30])  # the end-of-central-directory record is cut
    assert_refused(z, dest, r"is not a \.zip archive")


def test_images_loose_at_top_refused(tmp_path, dest, outside):
    z = make_zip(tmp_path / "d.zip", {"1.png": png_bytes(), "2.png": png_bytes()})
    assert_refused(z, dest, "no class folders")


# --- refused: members that escape or are not plain files ---------------------------------------


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "cat/..", "..\\evil.png"])
def test_dotdot_member_refused(tmp_path, dest, outside, name):
    z = make_zip(tmp_path / "d.zip", {"cat/1.png": png_bytes(), name: b"x"})
    assert_refused(z, dest, re.escape(f"member {name!r}"))


@pytest.mark.parametrize("name", ["/etc/evil.png", "C:/evil.png", "C:\\Windows\\evil.png", "d:evil.png"])
def test_absolute_member_refused(tmp_path, dest, outside, name):
    z = make_zip(tmp_path / "d.zip", {"cat/1.png": png_bytes(), name: b"x"})
    assert_refused(z, dest, "absolute or Windows-style path")


def test_symlink_member_refused(tmp_path, dest, outside):
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("cat/1.png", png_bytes())
        link = zipfile.ZipInfo("cat/2.png")
        link.create_system = 3  # Unix, so external_attr holds st_mode
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")  # a symlink's target is its data
    assert_refused(z, dest, r"member 'cat/2\.png' is a symbolic link")


def test_file_and_folder_of_the_same_name_refused(tmp_path, dest, outside):
    z = make_zip(
        tmp_path / "d.zip", {"cat/a.png": png_bytes(), "cat/a.png/b.png": png_bytes(), "dog/c.png": png_bytes()}
    )
    assert_refused(z, dest, r"member 'cat/a\.png/b\.png' cannot be extracted")


def test_member_named_like_the_marker_is_dropped(tmp_path, dest):
    z = make_zip(
        tmp_path / "d.zip", {"cat/a.png": png_bytes(), "dog/b.png": png_bytes(), ".torchscope-extracted/x": b"x"}
    )
    root = extract_zip(z, dest, **LIMITS)
    assert (root / ".torchscope-extracted").is_file() and sorted(os.listdir(root)) == [
        ".torchscope-extracted",
        "cat",
        "dog",
    ]


# --- refused: over the limits, before anything is written --------------------------------------


def test_too_many_files_refused(tmp_path, dest, outside):
    z = make_zip(tmp_path / "d.zip", {f"c{i % 2}/{i}.png": b"x" for i in range(11)})
    assert_refused(z, dest, "holds 11 files and 0 folders, over the limit of 10 entries", max_files=10, max_bytes=2**30)


def test_empty_folders_count_towards_the_entry_limit(tmp_path, dest, outside):
    # Folders count as entries: 200,000 empty ones would cost 800 MB of inodes while holding no file.
    members = {"a/1.png": png_bytes(), "b/1.png": png_bytes()} | {f"a/empty{i}/": b"" for i in range(20)}
    z = make_zip(tmp_path / "d.zip", members)
    assert_refused(z, dest, "holds 2 files and 20 folders, over the limit of 10 entries", max_files=10, max_bytes=2**30)


def test_junk_does_not_count_towards_file_limit(tmp_path, dest):
    members = {f"c{i % 2}/{i}.png": png_bytes() for i in range(10)}
    members |= {f"__MACOSX/c{i % 2}/._{i}.png": b"x" for i in range(10)}
    z = make_zip(tmp_path / "d.zip", members)
    assert len(list(extract_zip(z, dest, max_files=10, max_bytes=2**30).rglob("*.png"))) == 10


def test_declared_size_too_big_refused(tmp_path, dest, outside):
    z = make_zip(tmp_path / "d.zip", {"cat/1.bin": bytes(600_000), "dog/1.bin": bytes(600_000)})
    assert_refused(z, dest, "unpacks to 1.1 MiB, over the limit of 1.0 MiB", max_files=10, max_bytes=2**20)


# --- refused: a 2 GiB member of zeros (a zip bomb), honest and lying -----------------------------


def raw_zip(path: Path, name: str, data: bytes, *, declared: int, crc: int) -> Path:
    """A one-member DEFLATED zip written byte by byte, so the declared size can be anything."""
    n = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\3\4", 20, 0, 8, 0, 0, crc, len(data), declared, len(n), 0) + n
    central = (
        struct.pack("<4s6H3L5H2L", b"PK\1\2", 20, 20, 0, 8, 0, 0, crc, len(data), declared, len(n), 0, 0, 0, 0, 0, 0)
        + n
    )
    end = struct.pack("<4s4H2LH", b"PK\5\6", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


@pytest.fixture(scope="module")
def zeros_2gib() -> tuple[bytes, int]:
    """A raw deflate stream of 2 GiB of zeros (about 2 MB) and the CRC of its first MiB.

    A full flush resets the compressor, so one 64 MiB block repeated 32 times is a valid stream;
    that takes a second where deflating 2 GiB would take ten.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(64 * 2**20)) + comp.flush(zlib.Z_FULL_FLUSH)
    stream = block * 32 + b"\x03\x00"  # an empty final block ends the stream
    check = zlib.decompressobj(-15)
    assert len(check.decompress(stream[: len(block) + 1024], 64 * 2**20)) == 64 * 2**20
    return stream, zlib.crc32(bytes(2**20))


def test_honest_2gib_member_refused_by_declared_size(tmp_path, dest, outside, zeros_2gib):
    stream, _ = zeros_2gib
    z = raw_zip(tmp_path / "bomb.zip", "cat/zeros.png", stream, declared=TWO_GIB, crc=0)
    assert_refused(z, dest, r"unpacks to 2,048\.0 MiB", max_files=10, max_bytes=2**30)


def test_lying_2gib_member_refused_by_stream_budget(tmp_path, dest, outside, zeros_2gib):
    # Declares 1 MiB with the right CRC for 1 MiB of zeros, so only the budget can catch it:
    # zipfile's own reader would stop at 1 MiB and accept it.
    stream, crc_1mib = zeros_2gib
    z = raw_zip(tmp_path / "bomb.zip", "cat/zeros.png", stream, declared=2**20, crc=crc_1mib)
    assert_refused(z, dest, "inflates past its declared 1,048,576 bytes", max_files=10, max_bytes=2**30)


def test_member_with_wrong_crc_refused(tmp_path, dest, outside):
    data = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = data.compress(b"abc" * 100) + data.flush()
    z = raw_zip(tmp_path / "d.zip", "cat/x.png", stream, declared=300, crc=12345)
    assert_refused(z, dest, "does not match the central directory")

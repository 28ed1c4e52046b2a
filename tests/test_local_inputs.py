"""Local inputs that never hang or mislead: pipes and devices skipped, unreadable folders said, deleted
files missing (not corrupt), and per-image pixel and frame limits checked from the header."""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from lib.data import images
from lib.data.images import load_rgb, read_header, set_limits
from lib.data.index import build_index, verify_index
from tests.helpers import png_bytes, run_unprivileged, world_readable_dir, write_imagefolder

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def small_limits():
    """Per-image limits small enough to test in milliseconds; the defaults come back afterwards."""
    before = images.LIMITS
    set_limits(100, 5)
    yield
    set_limits(before.max_pixels, before.max_frames)


def test_a_fifo_named_like_an_image_is_skipped_and_counted_without_hanging(tmp_path):
    root = write_imagefolder(tmp_path / "ds", classes=("a", "b"), per_class=2)
    os.mkfifo(root / "a" / "x.png")  # opening it to read would block forever
    os.symlink("/dev/zero", root / "b" / "zero.png")  # reading it would never end
    done = cli("inspect", str(root), "--json")
    summary = json.loads(done.stdout)
    assert done.returncode == 0 and summary["num_images"] == 4
    assert summary["special_files"] == ["a/x.png", "b/zero.png"] and not summary["bad_files"]


def test_inspect_of_a_device_answers_at_once():
    done = cli("inspect", "/dev/zero", timeout=30)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "regular file" in done.stderr


def test_an_unreadable_class_folder_is_reported_unreadable_not_empty():
    base = world_readable_dir("ts-unreadable-")
    try:
        root = write_imagefolder(base / "ds", classes=("a", "b"), per_class=2)
        for p in base.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        (root / "b").chmod(0o000)
        code = f"from lib.data.index import build_index; import json; i = build_index({str(root)!r}); "
        code += "print(json.dumps([i.unreadable_folders, i.empty_classes, i.num_images]))"
        done = run_unprivileged(code)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [["b"], [], 2]
    finally:
        (base / "ds" / "b").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_a_deleted_file_is_missing_not_corrupt_and_the_fingerprint_still_answers(tmp_path):
    root = write_imagefolder(tmp_path / "ds", classes=("a", "b"), per_class=2)
    index = build_index(str(root))
    before = index.fingerprint()
    (root / "a" / "a_0.png").unlink()
    assert index.fingerprint() != before  # a missing file changes the fingerprint rather than raising
    with pytest.raises(ValueError, match="^file not found .*rescan"):
        load_rgb(str(root / "a" / "a_0.png"))
    (bad,) = verify_index(index).bad_files
    assert bad.path == "a/a_0.png" and bad.reason.startswith("file not found") and "corrupt" not in bad.reason


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 16-bit grey, with a few bytes of pixel data (not enough)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b"")


def test_pixels_per_image_are_checked_from_the_header(tmp_path, small_limits):
    # 11 x 10 = 110 pixels, over 100: refused by size, though the file holds no pixel data to decode.
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(11, 10))
    for fn in (read_header, load_rgb):
        with pytest.raises(ValueError, match="too many pixels .*limit of 100 per image"):
            fn(str(path))
    (tmp_path / "ok.png").write_bytes(png_bytes(0, size=10))  # exactly 100 pixels
    assert read_header(str(tmp_path / "ok.png")).width == 10


def _gif(frames: int) -> bytes:
    buf = io.BytesIO()
    pics = [Image.new("RGB", (2, 2), (i * 37 % 256, i * 11 % 256, 0)) for i in range(frames)]  # all distinct
    pics[0].save(buf, "GIF", save_all=True, append_images=pics[1:], duration=10, loop=0)
    return buf.getvalue()


def test_frames_per_animated_image_are_limited(tmp_path, small_limits):
    (tmp_path / "many.gif").write_bytes(_gif(6))
    (tmp_path / "few.gif").write_bytes(_gif(5))
    with pytest.raises(ValueError, match="too many frames .*limit of 5"):
        load_rgb(str(tmp_path / "many.gif"))
    assert load_rgb(str(tmp_path / "few.gif")).size == (2, 2)


def test_the_channels_upload_says_and_enforces_the_apps_limit(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TORCHSCOPE_MAX_UPLOAD_MB", "3")
    at = AppTest.from_file(str(ROOT / "pages" / "channels.py"), default_timeout=120)
    at.run()
    uploader = next(u for u in at.get("file_uploader") if u.proto.id.endswith("channels_upload"))
    # The uploader's own limit, so the browser refuses and states max_upload_mb, not the server's 200 MB.
    assert uploader.proto.max_upload_size_mb == 3 and "up to 3 MB" in uploader.proto.label


def test_pages_say_a_vanished_file_is_missing_and_suggest_a_rescan(tmp_path):
    from streamlit.testing.v1 import AppTest

    from tests.test_text import markdown_texts

    root = write_imagefolder(tmp_path / "ds", classes=("a", "b"), per_class=20, size=(8, 8))
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.query_params.update(source="folder", path=str(root))
    at.run()
    assert not at.exception
    for p in root.rglob("*.png"):  # the session's files vanish after the folder was indexed
        p.unlink()
    at.number_input(key="grid_page").set_value(2).run()  # thumbnails not drawn (nor cached) before
    assert not at.exception  # the thumbnails say why instead
    assert any("file not found" in t and "rescan" in t for t in markdown_texts(at))
    at.switch_page("pages/channels.py")
    at.run()
    assert not at.exception, at.exception  # the dataset's fingerprint answers with files gone
    assert any("file not found" in t and "rescan" in t for t in markdown_texts(at))

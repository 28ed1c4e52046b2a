"""`python -m lib inspect SOURCE --json` run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
KEYS = {"root", "classes", "counts", "num_images", "bad_files", "skipped_files", "empty_classes"}


def inspect(source: Path | str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCHSCOPE_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "lib", "inspect", str(source), "--json"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def dataset(root: Path) -> Path:
    """cat: 2 images (one nested), a text file; dog: 1 image and a truncated JPEG; empty: nothing."""
    for rel in ["cat/a.png", "cat/sub/b.png", "dog/c.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / rel)
    Image.effect_noise((40, 40), 60).convert("RGB").save(root / "dog/broken.jpg")
    data = (root / "dog/broken.jpg").read_bytes()
    (root / "dog/broken.jpg").write_bytes(data[: len(data) // 2])
    (root / "cat/notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def assert_report(out: dict, root: str) -> None:
    assert KEYS <= set(out) and out["root"] == root
    assert out["classes"] == ["cat", "dog", "empty"]
    assert out["counts"] == {"cat": 2, "dog": 1, "empty": 0} and out["num_images"] == 3
    assert out["bad_files"] == [{"path": "dog/broken.jpg", "reason": "truncated image"}]  # relative, POSIX
    assert out["skipped_files"] == ["cat/notes.txt"] and out["empty_classes"] == ["empty"]


def assert_user_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for phrase in phrases:
        assert phrase in lines[0]


def test_folder(tmp_path):
    root = dataset(tmp_path / "ds")
    result = inspect(root, tmp_path)
    assert result.returncode == 0, result.stderr
    assert_report(json.loads(result.stdout), str(root))


def test_zip(tmp_path):
    root = dataset(tmp_path / "ds")
    with zipfile.ZipFile(tmp_path / "ds.zip", "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, Path("ds") / path.relative_to(root))  # one top folder, stripped
    result = inspect(tmp_path / "ds.zip", tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["root"]).is_relative_to(tmp_path / "cache" / "archives")
    assert_report(out, out["root"])


def test_missing_path(tmp_path):
    assert_user_error(inspect(tmp_path / "nope", tmp_path), "does not exist")


def test_plain_file_not_a_zip(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_user_error(inspect(tmp_path / "notes.txt", tmp_path), "notes.txt is not a .zip archive")


@pytest.mark.parametrize("content", ["bad files only", "no class folders"])
def test_folder_with_no_usable_images(tmp_path, content):
    root = tmp_path / "ds"
    if content == "bad files only":
        (root / "cat").mkdir(parents=True)
        (root / "cat" / "a.jpg").write_bytes(b"not a jpeg")
        result = inspect(root, tmp_path)
        assert_user_error(result, "has no usable images", "cat/a.jpg: not an image Pillow can read")
        assert json.loads(result.stdout)["bad_files"] == [
            {"path": "cat/a.jpg", "reason": "not an image Pillow can read"}
        ]
    else:
        root.mkdir()
        Image.new("RGB", (8, 8)).save(root / "loose.png")
        assert_user_error(inspect(root, tmp_path), "has no class folders")


def test_hostile_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("cat/a.png", b"x")
        zf.writestr("../../escaped.txt", b"gotcha")
    assert_user_error(inspect(tmp_path / "evil.zip", tmp_path), "evil.zip was refused", "'../../escaped.txt'")
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_text_report_lists_empty_classes_as_words(tmp_path):
    root = dataset(tmp_path / "ds")
    (root / "also_empty").mkdir()
    env = {**os.environ, "TORCHSCOPE_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "lib", "inspect", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "empty classes: also_empty, empty" in done.stdout and "[" not in done.stdout

"""lib.data.index (ImageFolder semantics, bad-file report) and lib.data.images (one decode path to RGB)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets
from PIL import Image

from lib.data.images import load_rgb, read_header
from lib.data.index import build_index, verify_index

# lib.data.images refuses over-limit images itself; pytest resets the filter that silences Pillow's warning.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def save(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def rgb(value, size=(8, 8)) -> Image.Image:
    return Image.new("RGB", size, value)


def noise_jpeg(path: Path, size=(64, 64), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    return save(path, Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)), quality=90)


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    """Three classes; `cat` has a nested folder; .jpg and .png mixed; no hidden or bad files."""
    root = tmp_path / "ds"
    for i in range(3):
        save(root / "cat" / f"c{i}.png", rgb((i, 0, 0)))
        save(root / "dog" / f"d{i}.jpg", rgb((0, i, 0)))
    save(root / "cat" / "indoor" / "x.png", rgb((9, 9, 9)))
    save(root / "cat" / "indoor" / "deeper" / "y.jpg", rgb((9, 9, 9)))
    save(root / "zebra" / "z.jpeg", rgb((1, 1, 1)))
    return root


# --- ImageFolder semantics -------------------------------------------------------------------------


def test_matches_torchvision_imagefolder(clean_tree):
    ours = build_index(str(clean_tree))
    ref = torchvision.datasets.ImageFolder(str(clean_tree))
    assert ours.classes == ref.classes and ours.class_to_idx == ref.class_to_idx
    # torchvision orders by sorted os.walk tuples, we walk depth-first with sorted names: same set,
    # and within this tree (no names sorting below "/") the same order too.
    assert sorted(ours.samples) == sorted(ref.samples)
    assert ours.samples == ref.samples
    assert ours.root == str(clean_tree) and ours.num_images == 9 and not ours.bad_files


def test_nested_subfolders_belong_to_their_class(clean_tree):
    index = build_index(str(clean_tree))
    by_rel = {index.relpath(p): index.classes[t] for p, t in index.samples}
    assert by_rel["cat/indoor/x.png"] == "cat" and by_rel["cat/indoor/deeper/y.jpg"] == "cat"
    assert index.class_counts() == {"cat": 5, "dog": 3, "zebra": 1}
    assert "indoor" not in index.classes


def test_samples_sorted_within_each_class(tmp_path):
    for name in ["b.png", "a.png", "c.png", "B.png"]:
        save(tmp_path / "k" / name, rgb((0, 0, 0)))
    index = build_index(str(tmp_path))
    assert [os.path.basename(p) for p, _ in index.samples] == sorted(["b.png", "a.png", "c.png", "B.png"])


def test_headers_read_without_decoding(clean_tree):
    index = build_index(str(clean_tree))
    for (path, _), header in zip(index.samples, index.headers, strict=True):
        with Image.open(path) as img:
            assert (header.width, header.height, header.mode, header.format) == (*img.size, img.mode, img.format)


def test_not_a_folder_or_no_classes(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        build_index(str(tmp_path / "missing"))
    save(tmp_path / "loose.png", rgb((0, 0, 0)))
    with pytest.raises(ValueError, match="has no class folders; put each class's images in a sub-folder"):
        build_index(str(tmp_path))


# --- bad files: each reported with a reason and left out, never a crash ------------------------------


@pytest.fixture
def bad_tree(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "ds"
    save(root / "good" / "ok.png", rgb((10, 20, 30)))
    jpeg = noise_jpeg(root / "good" / "truncated.jpg", size=(30, 30)).read_bytes()  # under the pixel limit below
    (root / "good" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "good" / "zero.png").write_bytes(b"")
    (root / "good" / "text.jpg").write_text("I am a text file with a .jpg name\n")
    (root / "good" / "dangling.png").symlink_to(root / "nowhere.png")
    # Pillow warns past MAX_IMAGE_PIXELS and errors past twice that; both must be refused.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    save(root / "bombs" / "warn.png", rgb((0, 0, 0), (40, 40)))  # 1,600 pixels
    save(root / "bombs" / "error.png", rgb((0, 0, 0), (50, 50)))  # 2,500 pixels
    (root / "good" / "notes.txt").write_text("hello")
    (root / "good" / "labels.csv").write_text("a,b")
    save(root / "good" / ".hidden.png", rgb((0, 0, 0)))
    (root / "good" / "._ok.png").write_bytes(b"\0\5\26\7 AppleDouble")
    save(root / "good" / ".thumbs" / "t.png", rgb((0, 0, 0)))  # a hidden folder is not walked
    (root / "empty").mkdir()
    return root


def test_header_pass_reports_each_bad_file(bad_tree):
    index = build_index(str(bad_tree))
    reasons = {b.path: b.reason for b in index.bad_files}
    assert set(reasons) == {"good/zero.png", "good/text.jpg", "good/dangling.png", "bombs/warn.png", "bombs/error.png"}
    assert reasons["good/zero.png"] == "empty file (0 bytes)"
    assert reasons["good/text.jpg"] == "not an image Pillow can read"
    assert reasons["good/dangling.png"] == "dangling symbolic link"
    assert reasons["bombs/warn.png"].startswith("too many pixels (40x40 = 1,600, over this app's limit of 1,000")
    assert reasons["bombs/error.png"].startswith("too many pixels")
    # The truncated JPEG's header is intact: only the full check can catch it.
    assert sorted(index.relpath(p) for p, _ in index.samples) == ["good/ok.png", "good/truncated.jpg"]


def test_full_check_catches_truncated_jpeg(bad_tree):
    index = verify_index(build_index(str(bad_tree)))
    assert index.verified and [index.relpath(p) for p, _ in index.samples] == ["good/ok.png"]
    assert {b.path: b.reason for b in index.bad_files}["good/truncated.jpg"] == "truncated image"
    assert [b.path for b in index.bad_files] == sorted(b.path for b in index.bad_files)
    assert len(index.headers) == 1


def test_skipped_hidden_and_empty(bad_tree):
    index = verify_index(build_index(str(bad_tree)))
    # Non-image and hidden files are left out and listed; nothing under a hidden folder is walked.
    assert index.skipped_files == ["good/._ok.png", "good/.hidden.png", "good/labels.csv", "good/notes.txt"]
    assert index.classes == ["bombs", "empty", "good"]
    assert index.empty_classes == ["bombs", "empty"]  # `bombs` only had bad files
    summary = index.summary()
    assert summary["counts"] == {"bombs": 0, "empty": 0, "good": 1} and summary["num_images"] == 1


def test_progress_reaches_total(clean_tree):
    calls = []
    build_index(str(clean_tree), progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 9) and calls[-1] == (9, 9)


# --- one decode path: every mode becomes RGB ----------------------------------------------------------


def test_exif_orientation_applied(tmp_path):
    # 40 wide, 20 high: left half red, right half blue. Orientation 6 means "rotate 90 clockwise to view".
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "o.jpg", Image.fromarray(a), exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("RGB"))  # the pixels as stored, orientation ignored
    got = load_rgb(str(path))
    assert got.size == (20, 40)
    assert np.array_equal(np.asarray(got), np.rot90(stored, k=-1))  # numpy's hand rotation, clockwise
    top, bottom = np.asarray(got)[:18].mean((0, 1)), np.asarray(got)[22:].mean((0, 1))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # the left (red) half is now on top


def _palette_image(transparent: bool) -> tuple[Image.Image, dict]:
    img = Image.new("P", (4, 2), 0)
    img.putpalette([200, 100, 50, 0, 0, 255] + [0] * 762)
    img.paste(1, (2, 0, 4, 2))  # right half uses palette entry 1
    return img, ({"transparency": 1} if transparent else {})


def mode_cases():
    """(file name, image, save options, expected RGB of the left pixel, of the right pixel)."""
    # Alpha 51 is 20%: over white, v * 0.2 + 255 * 0.8 = v / 5 + 204 (hand-computed, exact).
    la = Image.merge("LA", [Image.new("L", (4, 2), 100), Image.new("L", (4, 2), 51)])
    rgba = Image.new("RGBA", (4, 2), (200, 100, 50, 51))
    rgba.paste((0, 0, 0, 0), (2, 0, 4, 2))  # right half fully transparent: white
    i16 = Image.fromarray(np.array([[0, 0, 65535, 65535]] * 2, np.uint16))  # /257: 0 and 255
    cmyk = Image.new("CMYK", (4, 2), (0, 255, 255, 0))  # no cyan or black: red
    cmyk.paste((0, 0, 0, 255), (2, 0, 4, 2))  # full black
    p, p_opts = _palette_image(False)
    pt, pt_opts = _palette_image(True)
    return [
        ("l.png", Image.new("L", (4, 2), 77), {}, (77, 77, 77), (77, 77, 77)),
        ("la.png", la, {}, (224, 224, 224), (224, 224, 224)),
        ("p.png", p, p_opts, (200, 100, 50), (0, 0, 255)),
        ("pt.png", pt, pt_opts, (200, 100, 50), (255, 255, 255)),
        ("rgba.png", rgba, {}, (244, 224, 214), (255, 255, 255)),
        ("i16.png", i16, {}, (0, 0, 0), (255, 255, 255)),
        ("cmyk.tif", cmyk, {}, (255, 0, 0), (0, 0, 0)),
        ("rgb.webp", rgb((12, 34, 56), (4, 2)), {"lossless": True}, (12, 34, 56), (12, 34, 56)),
        ("rgb.tiff", rgb((65, 43, 21), (4, 2)), {}, (65, 43, 21), (65, 43, 21)),
    ]


@pytest.mark.parametrize("name, img, opts, left, right", mode_cases(), ids=[c[0] for c in mode_cases()])
def test_every_mode_becomes_rgb(tmp_path, name, img, opts, left, right):
    path = save(tmp_path / name, img, **opts)
    assert read_header(str(path)).mode == img.mode  # the file really holds that mode
    out = load_rgb(str(path))
    assert out.mode == "RGB" and out.size == (4, 2)
    a = np.asarray(out).astype(int)
    assert np.abs(a[:, :2] - left).max() <= 1 and np.abs(a[:, 2:] - right).max() <= 1  # 1: blend rounding


def test_i16_middle_value(tmp_path):
    path = save(tmp_path / "i16.png", Image.fromarray(np.array([[0, 25700, 65535]], np.uint16)))
    assert np.asarray(load_rgb(str(path)))[0, :, 0].tolist() == [0, 100, 255]


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    assert np.asarray(load_rgb(str(path))).reshape(-1, 3).tolist() == [[255, 0, 0]] * 16


def test_truncated_jpeg_load_rgb_raises_value_error(tmp_path):
    data = noise_jpeg(tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    assert read_header(str(tmp_path / "t.jpg")).format == "JPEG"
    with pytest.raises(ValueError, match="^truncated image$"):
        load_rgb(str(tmp_path / "t.jpg"))


def test_threaded_chunks_keep_order_and_results(tmp_path, monkeypatch):
    # Over two chunks of 256, with bad files among them; threads forced on by making the first
    # chunk look like it waited on I/O (no CPU time), then compared with a single worker.
    for i in range(600):
        path = tmp_path / f"k{i % 3}" / f"{i:04d}.png"
        if i % 97 == 0:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"broken")
        else:
            save(path, rgb((i % 256, 0, 0), (2, 2)))
    monkeypatch.setattr(time, "thread_time", lambda: 0.0)
    calls = []
    threaded = build_index(str(tmp_path), workers=4, progress=lambda d, t: calls.append((d, t)))
    single = build_index(str(tmp_path), workers=1)
    assert threaded.samples == single.samples and threaded.headers == single.headers
    assert threaded.bad_files == single.bad_files and len(threaded.bad_files) == 7
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1] == (600, 600)
    assert [p for p, _ in threaded.samples] == sorted(p for p, _ in threaded.samples)


def test_without_headers_the_trainers_one_decode_finds_what_the_header_pass_and_full_check_find(bad_tree):
    """The trainer skips the header pass: its single decode must leave out exactly what the two passes report."""
    from lib.training.batches import decode_images

    full = verify_index(build_index(str(bad_tree)))
    quick = build_index(str(bad_tree), headers=False)
    assert quick.headers == [] and quick.classes == full.classes and quick.skipped_files == full.skipped_files
    bad: list = []
    decode_images([p for p, _ in quick.samples], 8, bad=bad)
    left_out = {quick.relpath(quick.samples[i][0]) for i, _ in bad}
    kept = [quick.relpath(p) for i, (p, _) in enumerate(quick.samples) if i not in {j for j, _ in bad}]
    assert left_out == {b.path for b in full.bad_files}
    assert kept == [full.relpath(p) for p, _ in full.samples] == ["good/ok.png"]

"""Issue 23, hole 6: the smaller holes. Animated images bounded by frames x pixels from their size, every
uploader capped in the browser, the Runs table's own CSV download inert, a run stopped by the time limit
saying so."""

import ast
import io
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from lib.data import images
from lib.data.images import load_rgb, set_limits
from lib.runs.compare import spreadsheet_safe
from lib.runs.store import RunStore
from lib.runs.view import status_sentence

ROOT = Path(__file__).resolve().parent.parent


def gif(frames: int, side: int) -> bytes:
    buf = io.BytesIO()
    pics = [Image.new("RGB", (side, side), (i * 37 % 256, i * 11 % 256, 0)) for i in range(frames)]  # distinct
    pics[0].save(buf, "GIF", save_all=True, append_images=pics[1:], duration=10, loop=0)
    return buf.getvalue()


@pytest.fixture
def limits():
    before = images.LIMITS
    set_limits(256 * 256, 100)
    yield
    set_limits(before.max_pixels, before.max_frames)


def test_an_animations_frames_times_pixels_are_bounded_from_its_size(tmp_path, limits):
    (tmp_path / "big.gif").write_bytes(gif(6, 256))  # 6 frames at the pixel limit: 6 images' worth to walk
    (tmp_path / "small.gif").write_bytes(gif(60, 16))  # 60 tiny frames: under both limits
    start = time.perf_counter()
    with pytest.raises(ValueError, match="too many frames .over 4 at 256x256"):
        load_rgb(str(tmp_path / "big.gif"))
    assert time.perf_counter() - start < 1.0
    assert load_rgb(str(tmp_path / "small.gif")).size == (16, 16)


def uploaders(path: Path) -> list[ast.Call]:
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
    return [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "file_uploader"]


@pytest.mark.parametrize(
    "page", [*sorted((ROOT / "pages").glob("*.py")), ROOT / "streamlit_app.py"], ids=lambda p: p.name
)
def test_every_uploader_has_the_browser_side_cap(page):
    for call in uploaders(page):
        assert "max_upload_size" in {k.arg for k in call.keywords}, f"{page.name}:{call.lineno}"


def test_the_runs_tables_cells_cannot_be_formulas():
    frame = pd.DataFrame({"name": ["=cmd|' /C calc'!A0", "+1", "ok", "@SUM(1)", "-x"], "lr": [-0.5, 1, 2, 3, 4]})
    safe = spreadsheet_safe(frame)
    assert list(safe["name"]) == ["'=cmd|' /C calc'!A0", "'+1", "ok", "'@SUM(1)", "'-x"]
    assert list(safe["lr"]) == [-0.5, 1, 2, 3, 4]  # numbers are numbers


def test_a_run_stopped_by_the_time_limit_says_so(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({"model": "mlp"})
    reason = "Stopped after 30 minutes, this server's limit per run; the metrics so far are kept."
    store.finish(run_id, "stopped", reason)
    assert status_sentence(store.get_run(run_id)) == reason
    other = store.create_run({"model": "mlp"})
    store.finish(other, "stopped", "")
    assert status_sentence(store.get_run(other)).startswith("Stopped on request")

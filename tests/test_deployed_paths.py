"""Deployed mode names no server folder: dataset captions, run configurations, extraction and run errors."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from lib.data.sources import Source
from lib.runs.store import RunStore
from lib.settings import cache_dir, runs_dir
from tests.helpers import png_bytes, zip_bytes
from tests.test_deployed import SIDEBAR_ONLY
from tests.test_text import markdown_texts

ROOT = Path(__file__).resolve().parents[1]


def _texts(at: AppTest) -> list[str]:
    """Every text the page shows: Markdown bodies, labels and captions, JSON and plain text."""
    out = markdown_texts(at)
    out += [el.proto.body for el in at.get("json")] + [el.proto.body for el in at.get("text")]
    return out


def _no_server_path(at: AppTest) -> None:
    assert not at.exception, at.exception
    hidden = [str(cache_dir()), str(runs_dir()), str(ROOT)]
    leaks = [t for t in _texts(at) for h in hidden if h in t.replace("\\", "")]
    assert not leaks, leaks


def test_an_extraction_error_names_no_server_folder(monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    at = AppTest.from_string(SIDEBAR_ONLY, default_timeout=120)
    at.session_state["source_kind"] = "upload"
    at.run()
    # `pets/cat` is a file and a folder: writing the second fails with an OSError naming the folder.
    data = zip_bytes({"pets/cat": b"x", "pets/cat/1.png": png_bytes(1), "pets/dog/1.png": png_bytes(2)})
    at.file_uploader(key="source_upload").set_value(("clash.zip", data, "application/zip"))
    at.run()
    error = at.session_state["source_error"]
    assert "cannot be extracted" in error and str(cache_dir()) not in error  # the reason, not the errno and path
    _no_server_path(at)


def test_dataset_caption_and_run_configuration_name_no_server_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    from lib.data.sample import sample_root

    at = AppTest.from_file(str(ROOT / "pages" / "dataset.py"), default_timeout=120)
    at.session_state["dataset_root"] = str(sample_root())
    at.session_state["source"] = Source("sample")
    at.session_state["session_id"] = "5" * 32
    at.run()
    assert at.caption[0].value.startswith("Built")  # the source's name, not its folder
    _no_server_path(at)
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run({"model": "mlp"}, root=str(sample_root()), owner="5" * 32)
    store.finish(run_id, "failed", f"{sample_root()}/circle/1.png does not exist; rescan the folder.")
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120)
    at.session_state["session_id"] = "5" * 32
    at.run()
    assert any("does not exist" in t for t in _texts(at))
    _no_server_path(at)

"""Outside text (URL values, folder/file/class names, exception messages, run names) shows as text.

The reference for "renders as text" is CommonMark's rule that a backslash before an ASCII
punctuation character makes it literal: every punctuation character of the payload must reach a
Markdown-rendering element escaped. The browser test (tests/browser/test_injection_browser.py)
checks the rendered DOM itself.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from streamlit.testing.v1 import AppTest

from lib.app.text import JOINER, plain
from lib.runs.store import RunStore
from tests.helpers import write_imagefolder, write_truncated_jpeg

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
PAYLOAD = "[x](https://e.example) ![i](https://e.example/t.png) :red[**x**] `"
# A file or folder name cannot hold '/': the same link, image, colour and code, without it.
NAME = "[x](https:e.example) ![i](e.example.png) :red[**x**] `"
# Kinds whose body (or label) Streamlit renders as Markdown.
MARKDOWN_KINDS = ("error", "warning", "info", "success", "caption", "markdown", "toast", "exception")


def escaped(text: str) -> str:
    """The reference: text with every ASCII punctuation character backslash-escaped."""
    return "".join("\\" + c if c in string.punctuation else c for c in text)


def unescape(md: str) -> str:
    """What CommonMark shows for text made only of characters and backslash escapes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", md)


def markdown_texts(at: AppTest) -> list[str]:
    """Every string the page hands to a Markdown renderer: alert/caption bodies, labels, image captions."""
    out = [el.proto.body for kind in MARKDOWN_KINDS for el in at.get(kind) if hasattr(el.proto, "body")]
    out += [img.caption for el in at.get("image") for img in el.proto.imgs]
    out += [el.proto.label for el in at.get("metric")]
    out += [el.proto.label for el in at.get("expandable")]
    return [t.replace(JOINER, "") for t in out]


def assert_shown_as_text(at: AppTest, payload: str, at_least: int = 1) -> None:
    """The payload reaches Markdown only escaped (and it is shown at least `at_least` times)."""
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    raw = [t for t in texts if payload in t]
    assert not raw, f"unescaped outside text reached Markdown: {raw}"
    shown = [t for t in texts if escaped(payload) in t]
    assert len(shown) >= at_least, texts


def test_plain_escapes_every_markdown_character():
    for text in (PAYLOAD, NAME, "a_b*c*", "$x$ :smile: :material/home: <b>hi</b> 1. # h", "back\\slash", "a@b.co"):
        out = plain(text)
        assert out.replace(JOINER, "") == escaped(text)
        assert unescape(out).replace(JOINER, "") == text
        # Streamlit loads its emoji shortcodes only when this pattern matches the source.
        assert not re.search(r":(?!material\/|streamlit:)[\w+-][\w_+-]*:", out)
        # GFM's bare-link patterns (mdast-util-gfm-autolink-literal) find nothing in the shown text.
        shown = unescape(out)
        assert not re.search(r"(https?://|www(?=\.))", shown, re.I) and not re.search(r"@[-\w]+\.", shown)


def run_app(page: str | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def test_url_values_show_as_text(tmp_path):
    at = run_app(source=PAYLOAD)
    assert_shown_as_text(at, PAYLOAD)
    at = run_app(source="folder", path=str(tmp_path / NAME))
    assert_shown_as_text(at, NAME)


def test_folder_file_and_class_names_show_as_text(tmp_path):
    root = write_imagefolder(tmp_path / NAME, classes=(NAME, "b"), per_class=2)
    (root / NAME / f"{NAME}.png").write_bytes((root / NAME / f"{NAME}_0.png").read_bytes())
    write_truncated_jpeg(root / "b" / f"{NAME}.jpg")
    (root / f"{NAME}-empty").mkdir()
    at = run_app(source="folder", path=str(root))
    # The root caption, the empty-class warning, image captions (class and file), the broken file's warning.
    assert_shown_as_text(at, NAME, at_least=4)
    at.switch_page("pages/channels.py")
    at.run()
    assert_shown_as_text(at, NAME)  # the image's relative path


def test_exception_messages_and_run_names_show_as_text(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("TORCHSCOPE_RUNS_DIR", str(runs))
    store = RunStore(runs)
    run_id = store.create_run({"model": "tiny_cnn"}, name=PAYLOAD)
    store.finish(run_id, "failed", f"RuntimeError: {PAYLOAD}")
    at = run_app("pages/train.py")
    assert_shown_as_text(at, PAYLOAD)
    # The run selector's options are plain text: the name shows unescaped there, as typed.
    assert any(PAYLOAD in o for o in at.selectbox(key="train_run").options)

"""Every page of the navigation opens through the router (streamlit_app.py) with no exception.

The list of pages is read from the router's own `st.Page(...)` calls, so a page added there is tested here.
"""

import ast
import asyncio
import concurrent.futures
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils import script_requests
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
from streamlit.runtime.state.common import WidgetMetadata
from streamlit.runtime.state.safe_session_state import SafeSessionState
from streamlit.runtime.state.session_state import SessionState
from streamlit.testing.v1 import AppTest

from lib.app import repairs

UPLOAD_REPAIRS = [
    r for r in repairs.REPAIRS if r[2] in (repairs._no_header_line_cap, repairs._keep_ends, repairs._rebuild_cut_line)
]

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def navigation() -> list[tuple[str, str]]:
    """(page file, title) of every st.Page the router builds, in its order."""
    pages = []
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page":
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg == "title"}
            pages.append((ast.literal_eval(node.args[0]), kwargs["title"]))
    return pages


def test_the_navigation_is_read_from_the_router():
    pages = navigation()
    assert len(pages) >= 3 and all(path.startswith("pages/") and (APP.parent / path).is_file() for path, _ in pages)


@pytest.mark.parametrize(("path", "title"), navigation(), ids=[t for _, t in navigation()])
def test_every_page_opens_through_the_router(path, title):
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title][:1] == [title]  # the page the navigation names is the one drawn
    assert not at.error, [e.value for e in at.error]


def test_every_page_installs_the_repairs_before_it_draws():
    """A deep link on a fresh server runs a page without the router: the page itself must leave that mode."""
    for path, _ in navigation():
        body = ast.parse((APP.parent / path).read_text()).body
        first = next(i for i, node in enumerate(body) if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr)))
        calls = [ast.unparse(node) for node in body[:first] if isinstance(node, ast.Expr)]
        assert "repairs.install()" in calls, f"{path} does not call repairs.install() right after its imports"


def test_the_pinned_streamlit_has_every_name_the_repairs_rely_on():
    for owner, name, _ in repairs.REPAIRS:
        assert name in vars(owner), f"{owner.__name__}.{name}"  # its own, not inherited
    safe = SafeSessionState(SessionState(), lambda: None)
    assert all(hasattr(safe, a) for a in ("_lock", "_state", "_yield_callback"))  # read by _apply_then_check


def test_install_replaces_streamlits_functions_once():
    repairs.install()
    repairs.install()  # again (every run does): the repair still wraps Streamlit's own, not itself
    assert script_requests._coalesce_widget_states is repairs._carry_unsent
    assert SafeSessionState.on_script_will_rerun is repairs._apply_then_check
    assert PagesManager.__init__ is repairs._init_leaving_pages_mode
    for repair in (repairs._carry_unsent, repairs._apply_then_check, repairs._init_leaving_pages_mode):
        assert repair.original is not repair and repair.original.__module__.startswith("streamlit.")
    for owner, name, repair in UPLOAD_REPAIRS:
        assert getattr(owner, name) is repair and repair.original.__module__ == owner.__module__  # theirs


@pytest.mark.parametrize(
    ("owner", "name"), [(o, n) for o, n, _ in repairs.REPAIRS], ids=[n for _, n, _ in repairs.REPAIRS]
)
def test_install_refuses_a_streamlit_without_a_name_it_relies_on(monkeypatch, owner, name):
    monkeypatch.delattr(owner, name)
    with pytest.raises(RuntimeError, match=f"has no .*{name}.*requirements.txt"):
        repairs.install()


class Rerun(Exception):
    """st.rerun, as called outside a script run."""


def test_install_leaves_the_old_pages_mode_with_a_rerun(monkeypatch):
    def rerun():
        raise Rerun

    monkeypatch.setattr(PagesManager, "uses_pages_directory", True)
    monkeypatch.setattr(repairs.st, "rerun", rerun)
    with pytest.raises(Rerun):
        repairs.install()
    assert PagesManager.uses_pages_directory is False
    repairs.install()  # the mode is off: no second rerun


def test_a_pages_manager_made_after_install_leaves_the_old_pages_mode(monkeypatch, tmp_path):
    """Streamlit turns the mode on for every PagesManager made while the flag is unset (each session; each
    AppTest run resets it): a run begun in it would rerun and lose the button click that started it."""
    (tmp_path / "pages").mkdir()
    (tmp_path / "app.py").write_text("")
    repairs.install()
    monkeypatch.setattr(PagesManager, "uses_pages_directory", None)
    PagesManager(str(tmp_path / "app.py"), setup_watcher=False)
    assert PagesManager.uses_pages_directory is False


def _states(**values) -> WidgetStates:
    """Widget values as the browser sends them: ints as int_value, True as a fired button's trigger."""
    states = WidgetStates()
    for wid, value in values.items():
        w = states.widgets.add(id=wid)
        if value is True:
            w.trigger_value = True
        else:
            w.int_value = value
    return states


def test_a_choice_sent_just_before_a_page_switch_reaches_the_switch_run():
    """Streamlit's request queue, repaired: a radio change still pending when a page switch
    (which names only the router's widgets) arrives is carried into the switch's run, not dropped."""
    repairs.install()
    queue = ScriptRequests()
    queue.request_rerun(RerunData(widget_states=_states(norm_choice=2, channels_image=5, stop=True)))
    queue.request_rerun(RerunData(widget_states=_states(channels_image=7, source_kind=0), page_script_hash="dataset"))
    run = queue.on_scriptrunner_yield().rerun_data
    values = {w.id: w.trigger_value if w.HasField("trigger_value") else w.int_value for w in run.widget_states.widgets}
    assert run.page_script_hash == "dataset"
    # The newer request wins where it names a widget; the pending choice and the fired button are kept.
    assert values == {"norm_choice": 2, "channels_image": 7, "source_kind": 0, "stop": True}


class Switched(Exception):
    """The page switch's request, found pending by a check of the script runner."""


def test_a_choice_whose_run_is_cut_short_by_a_page_switch_is_still_kept():
    """Streamlit's session state, repaired: the radio's run is taken, then the switch's
    request arrives before it begins (Streamlit then drops the page's widget values): the kept copy
    already holds the new value."""
    repairs.install()
    state = SessionState()
    for wid in ("norm_choice", "channels_image", "channels_upload"):  # drawn by an earlier, finished run
        state.register_widget(WidgetMetadata(wid, lambda v: v, lambda v: v, "int_value"), user_key=wid)
    state.on_script_finished(frozenset({"norm_choice", "channels_image", "channels_upload"}))
    state["kept:norm_choice"], state["kept:channels_image"] = 0, 0  # what state.keep copied then
    pending = [True]

    def check() -> None:
        if pending and pending.pop():
            raise Switched

    safe = SafeSessionState(state, check)
    with pytest.raises(Switched):  # the radio's run stops for the switch before its script starts
        safe.on_script_will_rerun(_states(norm_choice=2, channels_image=5, channels_upload=1))
    assert (state["kept:norm_choice"], state["kept:channels_image"]) == (2, 5)
    assert "kept:channels_upload" not in state  # only values a page keeps are copied


def _multipart(name: str, data: bytes) -> bytes:
    """A file as Streamlit's uploader sends it from Chrome: the name twice, its quotes and line breaks escaped."""
    quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    disposition = f'Content-Disposition: form-data; name="{quoted}"; filename="{quoted}"'
    return f"--B\r\n{disposition}\r\nContent-Type: application/zip\r\n\r\n".encode() + data + b"\r\n--B--\r\n"


def _parse_upload(body: bytes, chunk: int = 65_536) -> tuple[str, bytes]:
    """(file name, bytes) as Streamlit's upload route reads them: Starlette's parser over the body in chunks."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    async def stream():
        for start in range(0, len(body), chunk):
            yield body[start : start + chunk]

    async def parse():
        form = await MultiPartParser(Headers({"content-type": "multipart/form-data; boundary=B"}), stream()).parse()
        (upload,) = form.values()
        return upload.filename, await upload.read()

    # In a thread of its own: in the whole suite the browser tests' Playwright keeps an event loop running in
    # the main thread, and asyncio.run refuses to start beside it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, parse()).result()


LONG_NAMES = {
    "one byte over the line kept whole": "é" * 502 + "a.zip",
    "2,100 ASCII": "a" * 2_096 + ".zip",
    "1,100 two-byte": "é" * 1_100 + ".zip",
    "1,000 three-byte": "日本" * 500 + ".zip",
    "700 four-byte, odd cut": "x" + "🐈" * 700 + ".zip",
    "2 MB in small chunks": "b" * 2_000_000 + ".zip",
}


@pytest.mark.parametrize("name", LONG_NAMES.values(), ids=LONG_NAMES.keys())
def test_an_upload_whose_name_is_over_the_multipart_limit_arrives_with_its_middle_cut(name):
    """The file arrives whole under its name's first 150 and last 90 bytes, cut at whole characters (the
    reference: Python's own decoder dropping the bytes of a character cut short)."""
    repairs.install()
    data = bytes(range(256)) * 40
    first, last = name.encode()[:150].decode("utf-8", "ignore"), name.encode()[-90:].decode("utf-8", "ignore")
    chunk = 1_000 if len(name) > 10_000 else 65_536
    assert _parse_upload(_multipart(name, data), chunk) == (first + "…" + last, data)
    assert last.endswith(".zip") and len((first + "…" + last).encode()) <= 243


def test_without_the_repair_a_name_over_the_multipart_limit_fails_the_upload(monkeypatch):
    """Starlette and python-multipart as they come: the exception Starlette turns into the bare 400 that Streamlit's
    uploader shows as "AxiosError: Request failed with status code 400", from a name of 2,087 bytes."""
    from starlette.formparsers import MultiPartException

    repairs.install()
    for owner, name, repair in UPLOAD_REPAIRS:
        monkeypatch.setattr(owner, name, repair.original)
    assert _parse_upload(_multipart("a" * 2_082 + ".zip", b"PK")) == ("a" * 2_082 + ".zip", b"PK")
    with pytest.raises(MultiPartException, match="Invalid multipart data"):
        _parse_upload(_multipart("a" * 2_083 + ".zip", b"PK"))


@pytest.mark.parametrize("name", ["é" * 125 + ".zip", "日本" * 127 + ".zip", "é" * 501 + "ab.zip", 'a "b"\nc.zip'])
def test_an_upload_name_a_file_system_allows_arrives_unchanged(name):
    """Any name a file on disk has (255 bytes on Linux, 765 on Windows and macOS) up to 1,008 bytes (the line's
    2,048 bytes: the name twice and 31 more) arrives as Chrome sent it, its escapes too."""
    repairs.install()
    sent = name.replace('"', "%22").replace("\n", "%0A")
    assert _parse_upload(_multipart(name, b"PK")) == (sent, b"PK")

"""Every page of the navigation opens through the router (streamlit_app.py) with no exception.

The list of pages is read from the router's own `st.Page(...)` calls, so a page added there is tested here.
"""

import ast
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
from streamlit.runtime.state.common import WidgetMetadata
from streamlit.runtime.state.safe_session_state import SafeSessionState
from streamlit.runtime.state.session_state import SessionState
from streamlit.testing.v1 import AppTest

import lib.app  # noqa: F401 - installs its repair of Streamlit's request queue, as every page does

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
    """Streamlit's request queue, with lib.app imported: a radio change still pending when a page switch
    (which names only the router's widgets) arrives is carried into the switch's run, not dropped."""
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
    """Streamlit's session state, with lib.app imported: the radio's run is taken, then the switch's
    request arrives before it begins (Streamlit then drops the page's widget values): the kept copy
    already holds the new value."""
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

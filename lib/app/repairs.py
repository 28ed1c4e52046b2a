"""Three repairs of Streamlit internals, in one place: `install()` puts them in.

The router calls `install()` at the start of every run, and so does every page, because a deep link can
run a page without the router (first repair). Each repair relies on names of the pinned Streamlit
(requirements.txt); `install()` raises when one is gone rather than run without its repair, and
tests/test_router.py checks the names and that each is replaced.

1. Routing (`PagesManager.uses_pages_directory`). A `pages/` folder beside streamlit_app.py makes
   Streamlit start each server in its old multipage mode until the router's st.navigation runs once;
   when the server's first visit is a deep link (`/channels?class=cat`), that mode runs
   pages/channels.py alone, without the router's data-source sidebar and navigation, and stays so for
   every visitor until someone opens `/`. The first script run of the server (router or page) turns the
   old mode off and reruns, and the router then draws the linked page as usual. A PagesManager made after
   that (each new session, and each AppTest run, makes one) leaves the mode off (`PagesManager.__init__`):
   a run that started in it would rerun and lose the click that started it.

2. and 3. A choice kept across a page switch. A page switch sends only the router's widget values, and
   Streamlit drops the old page's values when the switch's run starts, so a choice made on a page is kept
   (`state.keep` copies it under a key of ours) only if a run took it first. A choice made just before
   clicking another page, while the server is busy, can miss that three ways: its run is stopped for the
   switch before the page's script copies it, or before it applies the values at all, or its request is
   still queued and the switch's request replaces its values. So a run applies the browser's values and
   copies them (`state.remember`) before it checks for a newer request
   (`SafeSessionState.on_script_will_rerun`), and queued values the newer request does not name are
   carried into it (`script_requests._coalesce_widget_states`).
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils import script_requests
from streamlit.runtime.state.safe_session_state import SafeSessionState

from lib.app import state

_TRIGGERS = {"trigger_value", "string_trigger_value", "chat_input_value", "json_trigger_value"}


def _carry_unsent(old, new):
    """Streamlit's merge of a pending request's widget values into a newer one, also keeping the old
    values of widgets the newer one lacks (triggers aside: Streamlit keeps those that fired)."""
    merged = _carry_unsent.original(old, new)
    if old is None or merged is None or merged is old:
        return merged
    named = {w.id for w in merged.widgets}
    merged.widgets.extend(w for w in old.widgets if w.id not in named and w.WhichOneof("value") not in _TRIGGERS)
    return merged


def _init_leaving_pages_mode(self, *args, **kwargs) -> None:
    """PagesManager.__init__, then the old multipage mode off: it turns it on whenever the flag is unset."""
    _init_leaving_pages_mode.original(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False


def _apply_then_check(self, *args, **kwargs) -> None:
    """SafeSessionState.on_script_will_rerun: take the browser's values and copy the kept ones, then
    check for a newer request (Streamlit's own checks first, so a run stopped for a newer request never
    takes the values)."""
    with self._lock:
        self._state.on_script_will_rerun(*args, **kwargs)
        state.remember(self._state)
    self._yield_callback()


# (owner, name, repair): the names each repair relies on; a repair of None only reads the name.
REPAIRS = (
    (PagesManager, "uses_pages_directory", None),
    (PagesManager, "__init__", _init_leaving_pages_mode),
    (script_requests, "_coalesce_widget_states", _carry_unsent),
    (SafeSessionState, "on_script_will_rerun", _apply_then_check),
)


def install() -> None:
    """Put the repairs into Streamlit (again is harmless) and leave the old multipage mode with a rerun.

    Raises:
        RuntimeError: when the installed Streamlit lacks a name a repair relies on.
    """
    missing = [f"{getattr(o, '__name__', o)}.{name}" for o, name, _ in REPAIRS if name not in vars(o)]
    if missing:
        raise RuntimeError(
            f"Streamlit {st.__version__} has no {', '.join(missing)}: lib/app/repairs.py needs the Streamlit "
            "that requirements.txt pins; install that, or port the repairs to this version."
        )
    for owner, name, repair in REPAIRS:
        if repair is not None:
            current = getattr(owner, name)
            repair.original = getattr(current, "original", current)  # Streamlit's own, even if installed before
            setattr(owner, name, repair)
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()

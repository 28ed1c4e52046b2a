"""The only package that imports streamlit: caching wrappers over the plain functions below, per-visitor session folders, and background jobs with progress.

Importing it also repairs two traps of Streamlit. First, routing: a `pages/` folder beside streamlit_app.py makes Streamlit
start each server in its old multipage mode (PagesManager.uses_pages_directory) until the router's
st.navigation runs once; when the server's first visit is a deep link (`/channels?class=cat`), that
mode runs pages/channels.py alone, without the router's data-source sidebar and navigation, and stays
so for every visitor until someone opens `/`. Every page imports this package, so the first script run
of the server turns the old mode off and reruns, and the router then draws the linked page as usual.

Second, a setting lost. A page switch sends only the router's widget values, and Streamlit drops
the old page's values when the switch's run starts, so a choice made on a page is kept (`state.keep`
copies it under a key of ours) only if a run took it first. A choice made just before clicking another
page, while the server was busy, was lost 1 time in 20 on a loaded machine: its run was stopped for the
switch before the page's script got to copy it, or before it applied the values at all, or its request
was still queued and the switch's request replaced its values. Now a run applies the browser's values
and copies them (`state.remember`) before it checks for a newer request, and queued values the newer
request does not name are carried into it.
"""

from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner_utils import script_requests as _requests
from streamlit.runtime.state.safe_session_state import SafeSessionState

from lib.app import state

_TRIGGERS = {"trigger_value", "string_trigger_value", "chat_input_value", "json_trigger_value"}
_coalesce = getattr(_requests, "_coalesce_widget_states", None)
_coalesce = getattr(_coalesce, "__wrapped__", _coalesce)  # once, even if this module is imported again


def _carry_unsent(old, new):
    """Streamlit's merge of a pending request's widget values into a newer one, also keeping the old
    values of widgets the newer one lacks (triggers aside: Streamlit keeps those that fired)."""
    merged = _coalesce(old, new)
    if old is None or merged is None or merged is old:
        return merged
    named = {w.id for w in merged.widgets}
    merged.widgets.extend(w for w in old.widgets if w.id not in named and w.WhichOneof("value") not in _TRIGGERS)
    return merged


if _coalesce is not None:  # a Streamlit without it (the pin moved) merges as it always did
    _carry_unsent.__wrapped__ = _coalesce
    _requests._coalesce_widget_states = _carry_unsent


def _apply_then_check(self, *args, **kwargs) -> None:
    """SafeSessionState.on_script_will_rerun: take the browser's values and copy the kept ones, then
    check for a newer request (Streamlit checked first, and a stopped run lost the values)."""
    with self._lock:
        self._state.on_script_will_rerun(*args, **kwargs)
        state.remember(self._state)
    self._yield_callback()


SafeSessionState.on_script_will_rerun = _apply_then_check

if PagesManager.uses_pages_directory:
    import streamlit as _st

    PagesManager.uses_pages_directory = False
    _st.rerun()

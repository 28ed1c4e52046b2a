"""Controls that keep their values across page switches and reruns, and the view that matters in the URL.

Why: Streamlit forgets a widget's value when its page is not drawn (switch from Train to Channels and
back, and the form is at its defaults again), and a URL that does not name what is shown cannot be
shared. Values therefore live twice: in the widget's own key while its page is drawn, and in a copy
under `kept:<key>` in st.session_state that Streamlit never drops.

How a page uses it (any page, Evaluate, Explain and Runs included):

    from lib.app.state import keep

    keep("train_epochs", 5)                         # before the widget; no value=/index= on the widget
    st.number_input("Epochs", 1, 100, key="train_epochs")
    keep("eval_run", runs[0], options=runs, param="run")   # also mirrored in the URL as ?run=...
    st.selectbox("Run", runs, key="eval_run")

`keep(key, default)` restores the widget's value from the copy (first visit: from the URL parameter
`param` when given and valid, else `default`), then refreshes the copy from the widget's current
value. With `param`, the value is written to st.query_params on every run, so a copied link
reproduces the view; a value from the URL is outside text: `cast` parses it and `options` (or
`valid`) must accept it, or the default is used. `set_value(key, v)` changes a kept value from a
callback (e.g. "Use this run's settings"), where widget keys may still be written.

`remember` refreshes every copy as each run takes the browser's values (lib/app/repairs.py installs it
in Streamlit), so a value changed just before a page switch is kept too.

Parameters in use: source, path, name, root, id (the router); page, class (Dataset); class, image
(Channels); run (Train). A page reads a parameter only when it first draws in a session; after
that the session's own value wins and the URL follows it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import streamlit as st

PREFIX = "kept:"
_MISSING = object()


def keep(
    key: str,
    default: Any,
    *,
    options: Sequence | None = None,
    param: str | None = None,
    cast: Callable[[str], Any] = str,
    valid: Callable[[Any], bool] | None = None,
) -> Any:
    """Make widget `key` start from its kept value (or the URL's, or default); return that value.

    Args:
        key: the widget's key (the page draws the widget right after, without value=/index=).
        default: the value on a first visit with nothing in the URL.
        options: the values the widget accepts; a kept or URL value outside them falls back to default.
        param: the query parameter that mirrors this value, if any.
        cast: parses the URL's string (int for numbers); a failure falls back to default.
        valid: an extra check of a URL or kept value (e.g. within a number input's range).
    """
    ok = _acceptor(options, valid)
    if key not in st.session_state or not ok(st.session_state[key]):
        value = st.session_state.get(PREFIX + key, _MISSING)
        if value is _MISSING and param and param in st.query_params:
            value = _parse(st.query_params[param], cast)
        st.session_state[key] = value if value is not _MISSING and ok(value) else default
    value = st.session_state[key]
    st.session_state[PREFIX + key] = value
    if param:
        set_param(param, value)
    return value


def remember(session: MutableMapping[str, Any]) -> None:
    """Copy every kept widget's newest value into its kept copy.

    Called by Streamlit's session state (see lib/app/repairs.py) each time a run takes the browser's values, before
    the run can be stopped for a newer request: a choice made just before a page switch is kept even
    though Streamlit drops the old page's widget values when the switch's run starts.
    """
    for name in [k for k in list(session) if isinstance(k, str) and k.startswith(PREFIX)]:
        key = name[len(PREFIX) :]
        if key in session:
            session[name] = session[key]


def set_value(key: str, value: Any) -> None:
    """Set a kept value and its widget (call from a callback, or before the widget is drawn)."""
    st.session_state[key] = value
    st.session_state[PREFIX + key] = value


def kept(key: str, default: Any = None) -> Any:
    """The kept value of `key` (its widget may be on another page), or default."""
    return st.session_state.get(PREFIX + key, default)


def set_param(name: str, value: Any) -> None:
    """Mirror one value in the URL, writing only when it changed (each write is a message to the browser)."""
    text = str(value)
    if st.query_params.get(name) != text:
        st.query_params[name] = text


def drop_params(names: Sequence[str]) -> None:
    """Remove URL parameters that no longer describe the view (e.g. another source's path)."""
    for name in names:
        if name in st.query_params:
            del st.query_params[name]


def _acceptor(options: Sequence | None, valid: Callable[[Any], bool] | None) -> Callable[[Any], bool]:
    def ok(value: Any) -> bool:
        try:
            return (options is None or value in options) and (valid is None or bool(valid(value)))
        except (TypeError, ValueError):
            return False

    return ok


def _parse(text: str, cast: Callable[[str], Any]) -> Any:
    try:
        return cast(text)
    except (TypeError, ValueError):
        return _MISSING

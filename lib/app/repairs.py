"""Four repairs of Streamlit internals (and of the Starlette server under it), in one place: `install()` puts them in.

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

4. An upload's over-long name. Streamlit's uploader sends a file's name twice in one header line of the
   upload (`Content-Disposition: form-data; name="N"; filename="N"`), and Starlette's multipart parser leaves
   that line to python-multipart, which refuses a line over 4,224 bytes: a name of 2,087 bytes or more
   (2,087 ASCII characters, 1,044 accented ones) failed the upload with a bare 400, shown by the uploader as
   "AxiosError: Request failed with status code 400" before the app saw the file. Now lines of any length
   pass python-multipart (`MultipartParser.__init__`; the request stays capped at server.maxUploadSize), and
   Starlette keeps a line of up to 2,048 bytes whole (a name of up to 1,008 bytes: any file on disk, 255
   bytes on Linux, 765 on Windows and macOS) and of a longer one only its two ends
   (`MultiPartParser.on_header_value`), from which the name is rebuilt as its first 150 and last 90 bytes
   joined by "…" at whole characters (`on_header_end`): the upload works as any other, its extension kept.
   These names are Starlette's and python-multipart's, pinned in requirements.txt beside Streamlit.
"""

from __future__ import annotations

import python_multipart
import streamlit as st
from starlette import formparsers
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


# A part's header line of up to _LINE bytes is kept whole; of a longer one, its first _HEAD and last _TAIL bytes
# (what a name cut to its first _FIRST and last _LAST bytes needs, with the parameters before and after it).
_LINE, _HEAD, _TAIL, _FIRST, _LAST = 2048, 200, 100, 150, 90
_CONTINUATION = bytes(range(0x80, 0xC0))  # the bytes of a UTF-8 character after its first


def _no_header_line_cap(self, *args, **kwargs) -> None:
    """python_multipart.MultipartParser.__init__, then no cap on a header line's length: `_keep_ends` bounds
    what Starlette keeps of one, and python-multipart itself only scans a line (Streamlit's uploads are
    the only multipart requests this server parses)."""
    _no_header_line_cap.original(self, *args, **kwargs)
    self.max_header_size = float("inf")


def _keep_ends(self, data: bytes, start: int, end: int) -> None:
    """MultiPartParser.on_header_value keeping of a line over _LINE bytes its first _HEAD bytes and (at least)
    its last _TAIL: memory stays bounded whatever the line's length; `_rebuild_cut_line` uses the ends."""
    value = self._current_partial_header_value + data[start:end]
    if len(value) > _LINE:
        value = value[:_HEAD] + value[-_TAIL:]
        self._header_cut = True
    self._current_partial_header_value = value


def _rebuild_cut_line(self) -> None:
    """MultiPartParser.on_header_end, a cut line first rebuilt from its ends: a Content-Disposition as
    Streamlit's uploader sends it for the name cut in the middle, any other line its ends joined by "…"."""
    if vars(self).pop("_header_cut", False):
        value = self._current_partial_header_value
        head, tail = _whole_chars(value[:_HEAD], value[_HEAD:][-_TAIL:])
        if self._current_partial_header_name.lower() == b"content-disposition":
            start = head.partition(b'filename="' if b'filename="' in head else b'="')[2].partition(b'"')[0]
            first, last = _whole_chars(start[:_FIRST], tail.rpartition(b'"')[0].rpartition(b'"')[2][-_LAST:])
            name = first + "…".encode() + last
            value = b'form-data; name="%s"; filename="%s"' % (name, name)
        else:
            value = head + "…".encode() + tail
        self._current_partial_header_value = value
    _rebuild_cut_line.original(self)


def _whole_chars(head: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """The two ends of a UTF-8 text cut in the middle, less the bytes of characters the cut split."""
    for back in range(1, min(len(head), 4) + 1):
        byte = head[-back]
        if byte not in _CONTINUATION:  # ASCII or the first byte of head's last character
            size = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            head = head[:-back] if back < size else head
            break
    return head, tail.lstrip(_CONTINUATION)


# (owner, name, repair): the names each repair relies on; a repair of None only reads the name.
REPAIRS = (
    (PagesManager, "uses_pages_directory", None),
    (PagesManager, "__init__", _init_leaving_pages_mode),
    (script_requests, "_coalesce_widget_states", _carry_unsent),
    (SafeSessionState, "on_script_will_rerun", _apply_then_check),
    (python_multipart.MultipartParser, "__init__", _no_header_line_cap),
    (formparsers.MultiPartParser, "on_header_value", _keep_ends),
    (formparsers.MultiPartParser, "on_header_end", _rebuild_cut_line),
)


def install() -> None:
    """Put the repairs into Streamlit (again is harmless) and leave the old multipage mode with a rerun.

    Raises:
        RuntimeError: when the installed Streamlit lacks a name a repair relies on.
    """
    missing = [f"{getattr(o, '__name__', o)}.{name}" for o, name, _ in REPAIRS if name not in vars(o)]
    if missing:
        raise RuntimeError(
            f"Streamlit {st.__version__} (or a package under it) has no {', '.join(missing)}: lib/app/repairs.py "
            "needs the versions that requirements.txt pins; install those, or port the repairs to these versions."
        )
    for owner, name, repair in REPAIRS:
        if repair is not None:
            current = getattr(owner, name)
            repair.original = getattr(current, "original", current)  # Streamlit's own, even if installed before
            setattr(owner, name, repair)
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()

"""Outside text shown as text: names and messages never become links, images or formatting.

st.error/warning/info/success/caption/markdown/toast, widget labels, metric labels, image
captions, progress text, expander labels and radio options all render Markdown (with Streamlit's
`:color[...]` directives, emoji shortcodes and LaTeX). Anything that comes from outside the code
(a URL value, a file, folder or class name, an exception message, a run name) goes through `plain`
before it reaches one of them. Selectbox options, st.text, st.code, st.json and dataframes show
text as it is and need nothing.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character: CommonMark renders each one literally when a backslash
# precedes it, and an escaped ':' also stops Streamlit's directives, icons and emoji shortcodes.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# A line starting with 4+ spaces or a tab would become a code block.
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)
# GFM links bare URLs and e-mail addresses found in text even when their punctuation is escaped; an
# invisible word joiner after the scheme, `www` or `@` keeps them from matching and reads the same.
_AUTOLINK = re.compile(r"(https?(?=:)|www(?=\.)|@(?=[\w-]))", re.IGNORECASE)
JOINER = "\u2060"
# Server folders a deployed app never names (set by lib/app/cache.settings): replaced by an ellipsis.
_HIDDEN: list[str] = []


def hide_paths(prefixes: list[str]) -> None:
    """From now on, `plain` and `public` show each of these server folders as `…` (longest first)."""
    _HIDDEN[:] = sorted({p.rstrip("/") for p in prefixes if p and p.strip("/")}, key=len, reverse=True)


def public(value: object) -> str:
    """`value` as a string with the hidden server folders replaced by `…` (for st.json, tables, text)."""
    text = str(value)
    for prefix in _HIDDEN:
        text = text.replace(prefix, "…")
    return text


def plain(value: object) -> str:
    """`value` as a string that any Markdown-rendering Streamlit element shows exactly as typed.

    Args:
        value: the outside text (anything; it is turned into a string first).

    Returns:
        The text with hidden server folders shown as `…` (see hide_paths), every ASCII punctuation
        character backslash-escaped, line indents dropped and a word joiner (JOINER, invisible) where
        a bare link would start.
    """
    text = _AUTOLINK.sub(r"\1" + JOINER, _INDENT.sub("", public(value)))
    return _PUNCTUATION.sub(r"\\\1", text)


def plain_error(error: BaseException) -> str:
    """An exception's message as plain text (its type name when the message is empty)."""
    return plain(str(error) or type(error).__name__)


def file_stem(names: list[str], limit: int = 60) -> str:
    """A download's file name from the runs in it: 'alpha+beta', characters a file name cannot hold as '_',
    cut at `limit` with the count of runs left out ('alpha+beta+3-more')."""
    safe = [re.sub(r"[^\w.-]+", "_", n).strip("._") or "run" for n in names]
    stem = "+".join(safe)
    for keep in range(len(safe) - 1, 0, -1):
        if len(stem) <= limit:
            break
        stem = "+".join(safe[:keep]) + f"+{len(safe) - keep}-more"
    return stem[: limit + 8]

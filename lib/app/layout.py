"""Layouts that hold at any window width.

Why: st.columns squeezes its columns into whatever the page has, so at 800 px (sidebar open, about 470 px of
page) a row of three charts cut their titles and a row of six thumbnails broke captions mid-word. A `tiles` row
gives each box a fixed width and wraps onto more rows when the page is narrower (three charts side by side at
1400 px, two then one at 800 px); a `scroller` keeps one wide chart whole and scrolls it inside its own box.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

# At 1400 px the page is 704 px wide, at 800 px about 468 px: two, three or five of these fit a row at 1400 px.
HALF, THIRD, THUMB = 340, 220, 128


def tiles(count: int, width: int, *, key: str | None = None) -> list[DeltaGenerator]:
    """`count` boxes `width` px wide in a row that wraps onto more rows where the page is narrower."""
    row = st.container(horizontal=True, key=key)
    return [row.container(width=width) for _ in range(count)]


def scroller(*, key: str | None = None) -> DeltaGenerator:
    """A box whose content keeps its own width and scrolls sideways inside the box when the page is narrower."""
    return st.container(horizontal=True, wrap=False, key=key)

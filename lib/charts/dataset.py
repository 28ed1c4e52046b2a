"""Chart builders: pandas DataFrame -> alt.Chart. Pure, testable without a server."""

from __future__ import annotations

import altair as alt
import pandas as pd

CLASS_PICK = "class_pick"  # name of the selection on the class balance chart


def class_balance_chart(df: pd.DataFrame) -> alt.Chart:
    """Bars of images per class; clicking a bar selects that class (selection `class_pick`)."""
    pick = alt.selection_point(name=CLASS_PICK, fields=["class"], on="click", clear="dblclick")
    return (
        alt.Chart(df, title="Images per class", height=240)
        .mark_bar(cursor="pointer")
        .encode(
            x=alt.X(
                "class:N",
                title="Class (click a bar to show its images)",
                sort=None,
                axis=alt.Axis(labelAngle=0, labelLimit=120),
            ),
            y=alt.Y("images:Q", title="Images (count)"),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)),
            tooltip=[
                alt.Tooltip("class:N", title="Class"),
                alt.Tooltip("images:Q", title="Images"),
                alt.Tooltip("share:Q", title="Share", format=".1%"),
            ],
        )
        .add_params(pick)
    )


def size_chart(df: pd.DataFrame) -> alt.Chart:
    """Image sizes as points (width x height), sized by how many images share that size."""
    return (
        alt.Chart(df, title="Image sizes")
        .mark_circle(opacity=0.7)
        .encode(
            x=alt.X("width:Q", title="Width (px)"),
            y=alt.Y("height:Q", title="Height (px)"),
            size=alt.Size("images:Q", title="Images"),
            tooltip=[
                alt.Tooltip("width:Q", title="Width (px)"),
                alt.Tooltip("height:Q", title="Height (px)"),
                "images:Q",
            ],
        )
    )


def aspect_chart(df: pd.DataFrame) -> alt.Chart:
    """Histogram of aspect ratios (width / height) from pre-binned counts."""
    return (
        alt.Chart(df, title="Aspect ratio")
        .mark_bar()
        .encode(
            x=alt.X("start:Q", bin="binned", title="Aspect ratio (width / height)"),
            x2="end:Q",
            y=alt.Y("images:Q", title="Images (count)"),
            tooltip=[
                alt.Tooltip("start:Q", format=".2f", title="From"),
                alt.Tooltip("end:Q", format=".2f", title="To"),
                "images:Q",
            ],
        )
    )


def mode_chart(df: pd.DataFrame) -> alt.Chart:
    """Images per Pillow mode, coloured by file format."""
    return (
        alt.Chart(df, title="Modes and formats")
        .mark_bar()
        .encode(
            x=alt.X("mode:N", title="Pillow mode"),
            y=alt.Y("images:Q", title="Images (count)"),
            color=alt.Color("format:N", title="Format"),
            tooltip=["mode:N", "format:N", "images:Q"],
        )
    )

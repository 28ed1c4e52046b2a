"""Chart builders for the Dataset page: pandas DataFrame -> alt.Chart. Pure, testable without a server."""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.style import COLOURS, INT_AXIS, PERCENT, SMALL_PLOT_HEIGHT, styled

CLASS_PICK = "class_pick"  # name of the selection on the class balance chart
COUNT_Y = alt.Y("images:Q", title="Images (count)", axis=alt.Axis(**INT_AXIS))


def class_balance_chart(df: pd.DataFrame) -> alt.Chart:
    """Bars of images per class; clicking a bar selects that class (selection `class_pick`)."""
    pick = alt.selection_point(name=CLASS_PICK, fields=["class"], on="click", clear="dblclick")
    chart = (
        alt.Chart(df)
        .mark_bar(cursor="pointer", color=COLOURS["count"])
        .encode(
            x=alt.X(
                "class:N",
                title="Class (click a bar to show its images)",
                sort=None,
                axis=alt.Axis(labelAngle=0 if len(df) <= 12 else -45, labelLimit=120),
            ),
            y=COUNT_Y,
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)),
            tooltip=[
                alt.Tooltip("class:N", title="Class"),
                alt.Tooltip("images:Q", title="Images"),
                alt.Tooltip("share:Q", title="Share", format=PERCENT),
            ],
        )
        .add_params(pick)
    )
    return styled(chart, "Images per class", height=SMALL_PLOT_HEIGHT)


def size_chart(df: pd.DataFrame) -> alt.Chart:
    """Image sizes as points (width x height) from `size_counts`, sized by how many images share that size.

    Axes start at 0 with room past the largest image, so no point sits clipped in a corner.
    """
    top = max([1, *df.get("width", []), *df.get("height", [])]) * 1.1
    most = int(df["images"].max()) if len(df) else 1
    chart = (
        alt.Chart(df)
        .mark_circle(opacity=0.6, color=COLOURS["count"])
        .encode(
            x=alt.X("width:Q", title="Width (px)", scale=alt.Scale(domain=[0, top], nice=False)),
            y=alt.Y("height:Q", title="Height (px)", scale=alt.Scale(domain=[0, top], nice=False)),
            # No legend: in a third of an 800 px window it would take the plot's width; the tooltip counts.
            size=alt.Size("images:Q", title="Images", legend=None, scale=alt.Scale(domain=[0, most], range=[20, 400])),
            tooltip=[
                alt.Tooltip("width:Q", title="Width (px)"),
                alt.Tooltip("height:Q", title="Height (px)"),
                alt.Tooltip("images:Q", title="Images"),
            ],
        )
    )
    return styled(chart, "Image sizes", height=SMALL_PLOT_HEIGHT)


def aspect_chart(df: pd.DataFrame) -> alt.Chart:
    """Histogram of aspect ratios (width / height) from pre-binned counts."""
    chart = (
        alt.Chart(df)
        .mark_bar(color=COLOURS["count"])
        .encode(
            x=alt.X("start:Q", bin="binned", title="Aspect ratio (width / height)"),
            x2="end:Q",
            y=COUNT_Y,
            tooltip=[
                alt.Tooltip("start:Q", format=".2f", title="From"),
                alt.Tooltip("end:Q", format=".2f", title="To"),
                alt.Tooltip("images:Q", title="Images"),
            ],
        )
    )
    return styled(chart, "Aspect ratio", height=SMALL_PLOT_HEIGHT)


def mode_chart(df: pd.DataFrame) -> alt.Chart:
    """Images per Pillow mode and file format, one bar each ("RGB PNG"): no legend to squeeze the plot."""
    data = df.assign(kind=df["mode"].astype(str) + " " + df["format"].astype(str))
    chart = (
        alt.Chart(data)
        .mark_bar(color=COLOURS["count"])
        .encode(
            x=alt.X("kind:N", title="Mode, format", axis=alt.Axis(labelAngle=0)),
            y=COUNT_Y,
            tooltip=["mode:N", "format:N", alt.Tooltip("images:Q", title="Images")],
        )
    )
    return styled(chart, "Modes and formats", height=SMALL_PLOT_HEIGHT)

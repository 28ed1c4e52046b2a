"""Chart builders for the Channels page: pandas DataFrame -> alt.Chart, pure (no Streamlit)."""

from __future__ import annotations

import altair as alt
import pandas as pd

CHANNEL_COLOURS = alt.Scale(domain=["red", "green", "blue"], range=["#d62728", "#2ca02c", "#1f77b4"])
HEATMAP_TITLE = "Normalized channels"
HISTOGRAM_TITLE = "Pixel histograms"


def channel_heatmaps(df: pd.DataFrame, unit: str = "std units", panel_px: int = 220) -> alt.FacetChart:
    """One heatmap per channel from `heatmap_frame` (channel, x, y, value), side by side.

    One diverging colour scale centred on 0 shared by the three panels, so one legend.
    `unit` names the values' unit in the legend and tooltip.
    """
    base = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("x:O", title="x (pixel)", axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y("y:O", title="y (pixel)", axis=alt.Axis(labels=False, ticks=False)),
            color=alt.Color(
                "value:Q",
                title=f"value ({unit})",
                scale=alt.Scale(scheme="redblue", reverse=True, domainMid=0),
            ),
            tooltip=[
                alt.Tooltip("channel:N"),
                alt.Tooltip("x:O", title="x (pixel)"),
                alt.Tooltip("y:O", title="y (pixel)"),
                alt.Tooltip("value:Q", format=".3f", title=f"value ({unit})"),
            ],
        )
    )
    return (
        base.properties(width=panel_px, height=panel_px)
        .facet(column=alt.Column("channel:N", sort=["red", "green", "blue"], title=None))
        .resolve_scale(color="shared")
        .properties(title=HEATMAP_TITLE)
    )


def pixel_histograms(df: pd.DataFrame, width: int = 560) -> alt.FacetChart:
    """Per-channel histograms from `histogram_frame`, before and after normalization, one row each.

    The channels are layered; a rule marks 0, so a normalization that misses the data's centre shows.
    """
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.45, binSpacing=0)
        .encode(
            x=alt.X("start:Q", title="pixel value (before: [0, 1]; after: std units)"),
            x2="end:Q",
            y=alt.Y("count:Q", title="pixels", stack=None),
            y2=alt.datum(0),  # bars rise from 0: x/x2 ranges alone leave Vega-Lite guessing the orientation
            color=alt.Color("channel:N", scale=CHANNEL_COLOURS, title="channel"),
            tooltip=[
                alt.Tooltip("stage:N"),
                alt.Tooltip("channel:N"),
                alt.Tooltip("start:Q", format=".3f", title="from"),
                alt.Tooltip("end:Q", format=".3f", title="to"),
                alt.Tooltip("count:Q", title="pixels"),
            ],
        )
    )
    zero = alt.Chart().mark_rule(color="black", strokeDash=[4, 3]).encode(x=alt.datum(0))
    return (
        alt.layer(bars, zero, data=df)
        .properties(width=width, height=140)
        .facet(row=alt.Row("stage:N", sort="descending", title=None))  # "before" above "after"
        .resolve_scale(x="independent", y="independent")
        .properties(title=HISTOGRAM_TITLE)
    )

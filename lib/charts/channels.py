"""Chart builders for the Channels page: pandas DataFrame -> alt.Chart, pure (no Streamlit)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from lib.charts.style import COLOURS, styled

CHANNEL_COLOURS = alt.Scale(domain=["red", "green", "blue"], range=[COLOURS[c] for c in ("red", "green", "blue")])
HEATMAP_TITLE = "Normalized channels"
RAW_HEATMAP_TITLE = "Channels, not normalized ([0, 1])"
HISTOGRAM_TITLE = "Pixel histograms"


def channel_heatmaps(
    df: pd.DataFrame, *, normalized: bool = True, panel_px: int = 120, aspect: float = 1.0
) -> alt.FacetChart:
    """One heatmap per channel from `heatmap_frame` (channel, x, y, value), side by side, one shared legend.

    Normalized values (std units) use a diverging scale centred on 0 (blue below the mean, red above);
    unnormalized [0, 1] values a sequential grey scale over [0, 1], since 0 is not their centre.
    `aspect` (width / height) keeps a non-square image's shape. Three 120 px panels and the legend
    beside them fit an 800 px window next to the sidebar, and the panels fill most of the chart's height.
    """
    unit = "std units" if normalized else "[0, 1]"
    # A symmetric domain puts 0 in the legend's middle, named (it showed only the ends).
    top = math.ceil(max(float(df["value"].abs().max()), 0.1) * 10) / 10 if normalized and len(df) else 1.0
    scale = (
        alt.Scale(scheme="redblue", reverse=True, domain=[-top, top], domainMid=0)
        if normalized
        else alt.Scale(scheme="greys", reverse=True, domain=[0, 1])
    )
    ticks = [-top, 0, top] if normalized else [0, 0.5, 1]
    base = (
        alt.Chart(df)
        .mark_rect(strokeWidth=0.6)  # each cell outlined in its own colour: no white seams between cells
        .encode(
            stroke=alt.Stroke("value:Q", scale=scale, legend=None),
            x=alt.X("x:O", title="x (pixel)", axis=None),  # pixel positions are in the tooltip
            y=alt.Y("y:O", title="y (pixel)", axis=None),
            color=alt.Color(
                "value:Q",
                title=unit,  # short: the legend sits beside three panels in an 800 px window
                scale=scale,
                legend=alt.Legend(
                    orient="right",
                    gradientLength=panel_px - 30,
                    gradientThickness=10,
                    titleLimit=panel_px,
                    values=ticks,
                    type="gradient",  # the stroke (same field) would make it a legend of symbols
                ),
            ),
            tooltip=[
                alt.Tooltip("channel:N"),
                alt.Tooltip("x:O", title="x (pixel)"),
                alt.Tooltip("y:O", title="y (pixel)"),
                alt.Tooltip("value:Q", format=".3f", title=f"value ({unit})"),
            ],
        )
    )
    width, height = (panel_px, round(panel_px / aspect)) if aspect >= 1 else (round(panel_px * aspect), panel_px)
    chart = (
        base.properties(width=width, height=height)
        .facet(column=alt.Column("channel:N", sort=["red", "green", "blue"], title=None), spacing=8)
        .resolve_scale(color="shared")
    )
    return styled(chart, HEATMAP_TITLE if normalized else RAW_HEATMAP_TITLE, height=None)


def histogram_titles(normalized: bool) -> tuple[str, str]:
    """The two histograms' titles; without normalization the second stage is the same [0, 1] pixels."""
    after = "after normalization (std units)" if normalized else "after: not normalized ([0, 1])"
    return f"{HISTOGRAM_TITLE} before normalization ([0, 1])", f"{HISTOGRAM_TITLE} {after}"


def pixel_histograms(df: pd.DataFrame, *, normalized: bool = True) -> list[alt.LayerChart]:
    """Per-channel histograms from `histogram_frame`: one chart before normalization, one after.

    Two charts rather than a facet, so each follows its column's width (a facet has a fixed width and ran
    past an 800 px window). The channels are layered; a rule marks 0, so a normalization that misses the
    data's centre shows.
    """
    units = ("[0, 1]", "std units" if normalized else "[0, 1]")
    stages = (df["stage"].str.startswith("before"), ~df["stage"].str.startswith("before"))
    return [
        _histogram(df[rows], title, f"Pixel value ({unit})")
        for rows, title, unit in zip(stages, histogram_titles(normalized), units, strict=True)
    ]


def _histogram(df: pd.DataFrame, title: str, x_title: str) -> alt.LayerChart:
    bars = (
        alt.Chart()
        .mark_bar(opacity=0.45, binSpacing=0)
        .encode(
            x=alt.X("start:Q", title=x_title),
            x2="end:Q",
            y=alt.Y("count:Q", title="Pixels", stack=None),
            y2=alt.datum(0),  # bars rise from 0: x/x2 ranges alone leave Vega-Lite guessing the orientation
            # No legend: red, green and blue are the channels' own colours (and the tooltip names them); a legend
            # under each of two charts took more height than their plots.
            color=alt.Color("channel:N", scale=CHANNEL_COLOURS, title="Channel", legend=None),
            tooltip=[
                alt.Tooltip("channel:N"),
                alt.Tooltip("start:Q", format=".3f", title="from"),
                alt.Tooltip("end:Q", format=".3f", title="to"),
                alt.Tooltip("count:Q", title="pixels"),
            ],
        )
    )
    zero = alt.Chart().mark_rule(color="black", strokeDash=[4, 3]).encode(x=alt.datum(0))
    return styled(alt.layer(bars, zero, data=df), title, height=160)

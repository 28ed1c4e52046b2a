"""Chart builders for the Channels page: pandas DataFrame -> alt.Chart, pure (no Streamlit)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from lib.charts.scales import DIVERGING, GREYS, colour_bar, symmetric_domain
from lib.charts.style import COLOURS, styled

CHANNEL_COLOURS = alt.Scale(domain=["red", "green", "blue"], range=[COLOURS[c] for c in ("red", "green", "blue")])
HISTOGRAM_TITLE = "Pixel histograms"


PLOT_PX = 256  # about this many px a side, each cell a whole number of px: no seams from cells at fractions of a px
PANEL_PX = (
    300  # the widest panel (a plot of 288 px + padding): three and their gaps fit 940 px (1400 px), one a row at 800
)


def heatmap_title(channel: str, normalized: bool) -> str:
    return f"{channel.capitalize()}, {'normalized' if normalized else 'not normalized'}"


def heatmap_scale(df: pd.DataFrame, normalized: bool) -> tuple[list[float], list[str]]:
    """(domain, colours) shared by the three heatmaps and their colour bar.

    Normalized values (std units): a diverging scale symmetric around 0 (blue below the mean, red above), its
    ends the largest |value| rounded up to a tenth. Unnormalized [0, 1] values: black to white over [0, 1].
    """
    if not normalized:
        return [0.0, 1.0], GREYS
    top = math.ceil(max(float(df["value"].abs().max()) if len(df) else 0.0, 0.1) * 10) / 10
    return symmetric_domain(top, DIVERGING), DIVERGING


def channel_heatmaps(df: pd.DataFrame, *, normalized: bool = True, plot_px: int = PLOT_PX) -> list[alt.Chart]:
    """One heatmap per channel from `heatmap_frame` (channel, x, y, value), red, green, blue, then their colour
    bar (`colour_bar`, ticks at the ends and 0): four charts for tiles PANEL_PX wide, which wrap in a narrow column.

    Each cell is k x k screen pixels, k the whole number that brings the longer side nearest `plot_px` (a cell
    at fractions of a pixel drew a mesh of lighter seams), so the image keeps its shape.
    """
    unit = "std units" if normalized else "[0, 1]"
    domain, colours = heatmap_scale(df, normalized)
    scale = alt.Scale(domain=domain, range=colours, interpolate="rgb")
    columns, rows = int(df["x"].max()) + 1 if len(df) else 1, int(df["y"].max()) + 1 if len(df) else 1
    k = max(1, round(plot_px / max(columns, rows)))
    charts = []
    for channel in CHANNEL_COLOURS.domain:
        chart = (
            alt.Chart(df[df["channel"] == channel])
            .mark_rect(strokeWidth=0.6)  # each cell outlined in its own colour: no white seams between cells
            .encode(
                stroke=alt.Stroke("value:Q", scale=scale, legend=None),
                x=alt.X("x:O", title="x (pixel)", axis=None),  # pixel positions are in the tooltip
                y=alt.Y("y:O", title="y (pixel)", axis=None),
                color=alt.Color("value:Q", title=unit, scale=scale, legend=None),  # the colour bar is the legend
                tooltip=[
                    alt.Tooltip("x:O", title="x (pixel)"),
                    alt.Tooltip("y:O", title="y (pixel)"),
                    alt.Tooltip("value:Q", format=".3f", title=f"value ({unit})"),
                ],
            )
            .properties(width=columns * k)
        )
        # autosize "pad", not styled's "fit-x": fitting shrank the plot by 2 px and put cells at fractions of a px.
        styled_chart = styled(chart, heatmap_title(channel, normalized), height=rows * k)
        charts.append(styled_chart.properties(autosize=alt.AutoSizeParams(type="pad")))
    return [*charts, colour_bar(domain, colours, title=f"Colour scale ({unit})")]


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

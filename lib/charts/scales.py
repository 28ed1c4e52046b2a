"""Colour scales shared by maps drawn as pictures (Explain's overlay) and as charts (Channels' heatmaps), and
`colour_bar`, a scale's legend as a chart of its own that follows its column's width.

Why a chart and not Vega's legend: a legend sits beside or under one chart, so three heatmaps side by side
either shared a facet (fixed width, 120 px panels that ran past an 800 px page) or repeated it three times.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.style import styled

# ColorBrewer's RdBu: blue below 0, near white at 0, red above (a signed value: evidence against or for, std units).
DIVERGING = ["#2166ac", "#67a9cf", "#f7f7f7", "#ef8a62", "#b2182b"]
GREYS = ["#000000", "#ffffff"]  # [0, 1] pixels: 0 black, 1 white, as the picture shows them


def symmetric_domain(top: float, colours: list[str]) -> list[float]:
    """The values of `colours` spread evenly from -top to top (0 in the middle for an odd count)."""
    n = len(colours) - 1
    return [-top + 2 * top * i / n for i in range(n + 1)]


def colour_bar(domain: list[float], colours: list[str], *, title: str) -> alt.Chart:
    """The colour scale of a map as a bar: `colours` at the values `domain` (ascending), ticks at its ends and 0.

    A domain from -m to m is a signed scale (0 in the middle); from 0 up, an unsigned one.
    """
    low, high = domain[0], domain[-1]
    steps = pd.DataFrame({"start": [low + (high - low) * i / 64 for i in range(64)]})
    steps["end"] = steps["start"] + (high - low) / 48  # overlapping the next step: no light seams between steps
    steps["value"] = steps["start"] + (high - low) / 128
    ticks = [low, 0.0, high] if low < 0 < high else [low, high]
    chart = (
        alt.Chart(steps)
        .mark_rect(clip=True)
        .encode(
            alt.X("start:Q", title=None, scale=alt.Scale(domain=[low, high], nice=False, zero=False),
                  axis=alt.Axis(values=ticks, format=".2~g", grid=False, labelFlush=True)),
            alt.X2("end:Q"),
            alt.Color("value:Q", scale=alt.Scale(domain=domain, range=colours, interpolate="rgb"), legend=None),
            tooltip=[alt.Tooltip("value:Q", title="value", format=".3~g")],
        )
    )  # fmt: skip
    return styled(chart, title, height=14)

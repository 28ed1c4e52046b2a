"""One look for every chart in the app: fonts, sizes, series colours, and `styled`, which every chart
builder calls last.

Why: Streamlit's theme sizes a chart with autosize "fit", so a chart's `height` is shared by its
title, axes and legend, and a busy chart's plot shrank to a sliver (a learning-rate plot of 23 px in
a 180 px chart drew a live ramp as a flat line). `styled` sets autosize "fit-x": the width still
follows the container (draw with `st.altair_chart(chart, width="stretch")`), while `height` is the
plot itself, so the data fills most of the chart whatever the decorations.

Use it in any new chart builder (Evaluate, Explain and Runs pages included):

    from lib.charts.style import COLOURS, PLOT_HEIGHT, styled

    def my_chart(df: pd.DataFrame) -> alt.Chart:
        chart = alt.Chart(df).mark_line(color=COLOURS["train"]).encode(...)
        return styled(chart, "My title", height=PLOT_HEIGHT)

Rules: titles in sentence case; every axis titled with its unit; a series keeps its colour on every
page (COLOURS); integer quantities use `INT_AXIS`; tiny or many-decade values use `log_or_linear`.
Faceted charts pass `height=None` (the height goes on the inner chart before `.facet`).
Charts render as SVG (`usermeta.embedOptions.renderer`), so browser tests can read the plot area:
the plot is `g.role-frame.root > g > path.background` (a single view) in the chart's SVG.
"""

from __future__ import annotations

import altair as alt

from lib.charts.numbers import PERCENT, PERCENT_SHORT, percent  # noqa: F401 - re-exported for chart builders

FONT = '"Source Sans", "Source Sans Pro", sans-serif'  # Streamlit's own font, so charts match the page
PADDING = {"top": 6, "bottom": 4, "left": 4, "right": 8}  # room for a title's ascenders and a last tick label
TITLE_SIZE = 16
AXIS_TITLE_SIZE = 13
LABEL_SIZE = 12
PLOT_HEIGHT = 240  # px of plot (data rectangle) for a main chart
SMALL_PLOT_HEIGHT = 180  # px of plot for a chart in a column of two or three

# One colour per series, the same on every page (Tableau 10, readable on white and for most colour vision).
COLOURS = {
    "train": "#1f77b4",
    "train_raw": "#9ecae9",  # per-step values under the smoothed line
    "validation": "#d62728",
    "accuracy": "#9467bd",
    "lr": "#2ca02c",
    "count": "#4c78a8",  # bars and points that count images
    "red": "#d62728",
    "green": "#2ca02c",
    "blue": "#1f77b4",
}

# Integer quantities (epochs, counts): no "1.5 epochs" tick, no "1.000000" label.
INT_AXIS = {"format": "d", "tickMinStep": 1}


def styled(chart: alt.TopLevelMixin, title: str, *, height: int | None = PLOT_HEIGHT) -> alt.TopLevelMixin:
    """chart with the shared title, plot height, sizing and config.

    Args:
        chart: any single, layered or faceted Altair chart, without `.configure_*` yet.
        title: the chart's title (shown whole, left-aligned).
        height: the plot's height in px; None leaves it to the chart (faceted charts).
    Returns:
        a top-level chart ready for st.altair_chart; nothing may be layered onto it afterwards.
    """
    # Faceted and concatenated charts cannot "fit"; Vega-Lite would warn and pad anyway.
    single = not isinstance(chart, (alt.FacetChart, alt.ConcatChart, alt.HConcatChart, alt.VConcatChart))
    props = {
        # limit 0: Streamlit would otherwise cut a title at the chart's width less 40 px
        "title": alt.Title(title, anchor="start", fontSize=TITLE_SIZE, offset=8, limit=0),
        "autosize": alt.AutoSizeParams(type="fit-x" if single else "pad", contains="padding"),
        "usermeta": {"embedOptions": {"renderer": "svg"}},
        "padding": PADDING,
    }
    if height is not None:
        props["height"] = height
    return (
        chart.properties(**props)
        .configure(font=FONT)
        .configure_axis(
            labelFontSize=LABEL_SIZE,
            titleFontSize=AXIS_TITLE_SIZE,
            titleFontWeight="normal",
            labelLimit=160,
            titleLimit=0,  # 0: never cut an axis title
            labelOverlap=True,  # drop labels that would overlap rather than print them on top of each other
        )
        .configure_legend(labelFontSize=LABEL_SIZE, titleFontSize=AXIS_TITLE_SIZE, labelLimit=0, orient="bottom")
        .configure_title(fontSize=TITLE_SIZE, limit=0)
    )


def title_text(spec: dict) -> str | None:
    """The title of a chart's Vega-Lite dict (a string, or the `text` of a title object)."""
    title = spec.get("title")
    return title.get("text") if isinstance(title, dict) else title


def log_or_linear(values, *, decades: float = 1.0) -> alt.Scale:
    """A log scale when positive values span more than `decades` powers of ten, else a linear one
    not forced to include 0 (a constant learning rate then reads as a level line, not a line at the top)."""
    positive = [float(v) for v in values if v == v and v > 0]
    if positive and len(positive) == len(list(values)) and max(positive) / min(positive) > 10**decades:
        return alt.Scale(type="log")
    return alt.Scale(zero=False, nice=True, padding=8)

"""Explain charts: the embedding map and the top-k probabilities, pure DataFrame -> alt.Chart."""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.style import PERCENT, PLOT_HEIGHT, styled

PICK = "pick"  # the selection parameter's name: st.altair_chart returns {"selection": {PICK: [{"path": ...}]}}
MISTAKE_SHAPE = "cross"


def embedding_chart(
    frame: pd.DataFrame, x: str, y: str, *, title: str, current: str | None = None, height: int = PLOT_HEIGHT
) -> alt.LayerChart:
    """Each image a point at (x, y), coloured by its true class, a cross where the model is wrong.

    Hovering shows the image's thumbnail (the `image` column: data URLs, which the Vega tooltip draws
    as a picture), classes and confidence; clicking selects the point's `path` (parameter PICK).
    The image at path `current` is ringed.
    """
    pick = alt.selection_point(name=PICK, fields=["path"], on="click", clear=False)
    axis = dict(labels=False, ticks=False, grid=False)
    base = alt.Chart(frame).encode(
        alt.X(f"{x}:Q", title="1st principal component", axis=alt.Axis(**axis)),
        alt.Y(f"{y}:Q", title="2nd principal component", axis=alt.Axis(**axis)),
    )
    points = base.mark_point(filled=True, size=70).encode(
        # A categorical scheme: neighbouring classes must not get two shades of one hue.
        alt.Color(
            "true class:N",
            title="True class",
            scale=alt.Scale(scheme="tableau10"),
            legend=alt.Legend(orient="bottom", columns=2),  # two columns still fit half of an 800 px page
        ),
        alt.Shape(
            "outcome:N",
            title="Prediction",
            scale=alt.Scale(domain=["right", "mistake"], range=["circle", MISTAKE_SHAPE]),
            legend=alt.Legend(orient="top", direction="horizontal"),  # its own row: two legends side by side clip
        ),
        opacity=alt.condition(pick, alt.value(0.9), alt.value(0.35)),
        tooltip=[
            alt.Tooltip("image:N", title="image"),
            alt.Tooltip("true class:N", title="true class"),
            alt.Tooltip("predicted:N", title="predicted"),
            alt.Tooltip("confidence:Q", title="confidence", format=PERCENT),
            alt.Tooltip("path:N", title="file"),
        ],
    )
    ring = base.transform_filter(alt.datum.path == (current or "")).mark_point(
        size=260, color="black", strokeWidth=2, filled=False
    )
    return styled(alt.layer(points.add_params(pick), ring), title, height=height)


def probability_chart(top: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of the top-k classes (columns `class`, `p`), most probable on top; the target in red."""
    highlight = "is target" in top.columns
    return (
        alt.Chart(top)
        .mark_bar()
        .encode(
            alt.X("p:Q", title="Probability", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            alt.Y(
                "class:N",
                title=None,
                sort=alt.SortField("p", order="descending"),
                axis=alt.Axis(labelOverlap=False),  # every class named, one bar each
            ),
            color=(
                alt.condition(alt.datum["is target"], alt.value("#d62728"), alt.value("#1f77b4"))
                if highlight
                else alt.value("#1f77b4")
            ),
            tooltip=[alt.Tooltip("class:N"), alt.Tooltip("p:Q", title="probability", format=PERCENT)],
        )
        .properties(height=28 * len(top) + 20)
    )

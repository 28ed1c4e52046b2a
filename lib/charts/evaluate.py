"""Charts of the Evaluate page: the clickable confusion matrix, PR curves and the reliability diagram.

Pure: numpy/pandas in, alt.Chart out. The heatmap's cells carry a point selection named CELL on the
fields `true` and `pred`, so `st.altair_chart(..., on_select=...)` returns the clicked cell.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from lib.charts.style import PADDING, PERCENT, PERCENT_SHORT

CELL = "cell"  # the heatmap's selection parameter
NORMALIZE = {
    "counts": "Counts",
    "recall": "Share of the true class (recall)",
    "precision": "Share of the prediction (precision)",
}
TEXT_MAX_CLASSES = 15  # above this many classes the cells are too small for their numbers
TITLE = {"anchor": "start", "fontSize": 16, "limit": 0}  # 0: never cut (Streamlit cut titles short)
# Width follows the column, `height` is the plot's own (Streamlit's default "fit" squeezes the plot
# to make room for a legend). lib/charts/style.py does the same once it lands.
FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")


def confusion_frame(confusion: np.ndarray, classes: list[str], normalize: str = "counts") -> pd.DataFrame:
    """One row per cell: true, pred, count, row share, column share, and `value`, the one normalize picks.

    Raises:
        ValueError: for a normalize other than counts, recall or precision.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"Unknown normalization {normalize!r}; choose one of {', '.join(NORMALIZE)}.")
    c = confusion.astype(np.float64)
    k = len(classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        row, col = c / c.sum(1, keepdims=True), c / c.sum(0, keepdims=True)
    df = pd.DataFrame({
        "true": np.repeat(classes, k), "pred": np.tile(classes, k), "count": confusion.ravel(),
        "row_share": np.nan_to_num(row).ravel(), "col_share": np.nan_to_num(col).ravel(),
    })  # fmt: skip
    df["value"] = {"counts": df["count"], "recall": df["row_share"], "precision": df["col_share"]}[normalize]
    df["error"] = df["true"] != df["pred"]
    return df


def error_order(confusion: np.ndarray, classes: list[str]) -> list[str]:
    """Classes with the most misclassified images first (ties in class order)."""
    errors = confusion.sum(1) - np.diag(confusion)
    return [classes[i] for i in np.argsort(-errors, kind="stable")]


def cell_px(num_classes: int) -> int:
    """Height of one row of cells: large for a few classes, at least 7 px so 100 classes fit in 700 px."""
    return int(np.clip(640 // max(num_classes, 1), 7, 48))


def _cell_colours(df: pd.DataFrame, x, y, normalize: str) -> list[alt.Chart]:
    """Right answers in blues, mistakes in oranges, each on its own scale, so a single mistake among
    hundreds of right answers shows; cells with no image stay blank (they read as errors' pale blue)."""
    share = normalize != "counts"
    layers = []
    for rows, scheme, title in ((~df["error"], "blues", "right"), (df["error"], "oranges", "mistakes")):
        part = df[rows & (df["count"] > 0)]
        top = float(part["value"].max()) if len(part) else 1.0
        # The range starts past white: the smallest count is already clearly coloured.
        scale = alt.Scale(scheme=alt.SchemeParams(scheme, extent=[0.3, 1.0]), domain=[0, top], type="sqrt")
        low = float(part["value"].min()) if len(part) else 0.0
        ends = sorted({low, top}) if share else sorted({int(low), int(top)})  # whole counts, no "1 1 2 2"
        legend = alt.Legend(format=PERCENT if share else "d", orient="bottom", gradientLength=120, values=ends)
        label = f"{NORMALIZE[normalize].split(' (')[0]}, {title}"
        layers.append(
            alt.Chart(part)
            .mark_rect()
            .encode(x=x, y=y, color=alt.Color("value:Q", scale=scale, title=label, legend=legend))
        )
    return layers


def confusion_heatmap(
    df: pd.DataFrame, order: list[str], *, normalize: str = "counts", selected: tuple[str, str] | None = None
) -> alt.LayerChart:
    """Rows true, columns predicted, colour the chosen value; click a cell to select it (CELL).

    The matrix follows its column's width (draw with width="stretch"): at 800 px all classes stay in view.
    `selected` (true, pred) draws a frame around the cell whose images the page shows (the page's choice,
    which a button may have made too, so the frame and not the click's own highlight marks it).
    """
    k, px = len(order), cell_px(len(order))
    font = 12 if k <= 30 else 9 if k <= 60 else 7
    select = alt.selection_point(name=CELL, fields=["true", "pred"], on="click", clear="dblclick")
    x = alt.X(
        "pred:N",
        sort=order,
        title="Predicted class",
        axis=alt.Axis(labelAngle=-45 if k <= 30 else -90, labelFontSize=font),
    )
    y = alt.Y("true:N", sort=order, title="True class", axis=alt.Axis(labelFontSize=font))
    share = normalize != "counts"
    # On top of the colours: every cell, transparent, clickable, with its tooltip and a grid line.
    cells = alt.Chart(df, name="cells").mark_rect(
        fill="transparent", stroke="#dddddd", strokeWidth=0.5 if k <= 60 else 0
    ).encode(
        x=x, y=y,
        tooltip=[alt.Tooltip("true:N", title="true"), alt.Tooltip("pred:N", title="predicted"),
                 alt.Tooltip("count:Q", title="images"), alt.Tooltip("row_share:Q", title="share of true", format=PERCENT),
                 alt.Tooltip("col_share:Q", title="share of predicted", format=PERCENT)],
    ).add_params(select)  # fmt: skip
    layers = [*_cell_colours(df, x, y, normalize), cells]
    if k <= TEXT_MAX_CLASSES:
        # White on the darker half of each scale (sqrt: past a quarter of its group's largest value).
        top = df.groupby("error")["value"].transform("max").replace(0, 1)
        text = df.assign(dark=df["value"] > top / 4)
        layers.append(alt.Chart(text).mark_text(fontSize=min(14, px // 3)).encode(
            x=x, y=y, text=alt.Text("value:Q", format=PERCENT_SHORT if share else "d"),  # a decimal does not fit a cell
            color=alt.condition(alt.datum.dark, alt.value("white"), alt.value("#333333")),
        ).transform_filter(alt.datum.count > 0))  # fmt: skip
    if selected is not None:
        frame = pd.DataFrame({"true": [selected[0]], "pred": [selected[1]]})
        layers.append(alt.Chart(frame).mark_rect(fill=None, stroke="#d62728", strokeWidth=2.5).encode(x=x, y=y))
    return (
        alt.layer(*layers)
        .resolve_scale(color="independent")
        .properties(
            height=px * k,
            title=alt.Title("Confusion matrix: click a cell to see its images", **TITLE),
            usermeta={"embedOptions": {"renderer": "svg"}},  # cells as SVG paths: a browser test can click one
            autosize=FIT_X,
            padding=PADDING,  # room for the title's and the y axis title's first pixel
        )
    )


def pr_chart(curves: pd.DataFrame) -> alt.Chart:
    """One-vs-rest precision-recall curves; curves has class, recall, precision, and `label` (class + AP)."""
    return (
        alt.Chart(curves)
        .mark_line(interpolate="step-after", clip=True)
        .encode(
            x=alt.X("recall:Q", title="Recall (class found)", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("precision:Q", title="Precision (picks right)", scale=alt.Scale(domain=[0, 1.02])),
            color=alt.Color(
                "label:N",
                title="Class (average precision)",
                legend=alt.Legend(orient="bottom", columns=2, labelLimit=140),
            ),
            tooltip=[
                "class:N",
                alt.Tooltip("recall:Q", format=".3f"),
                alt.Tooltip("precision:Q", format=".3f"),
                alt.Tooltip("threshold:Q", title="score ≥", format=".3f"),
            ],
        )  # fmt: skip
        .properties(
            height=240, title=alt.Title("Precision-recall, one vs rest", **TITLE), autosize=FIT_X, padding=PADDING
        )
    )


def reliability_chart(bins: pd.DataFrame, ece: float) -> alt.LayerChart:
    """Accuracy per confidence bin against the diagonal a calibrated model follows; bars' tooltips count."""
    df = bins.assign(mid=(bins["lower"] + bins["upper"]) / 2, gap=bins["accuracy"] - bins["confidence"])
    df = df[df["count"] > 0]
    x = alt.X("lower:Q", title="Confidence (top probability)", scale=alt.Scale(domain=[0, 1]))
    bars = alt.Chart(df).mark_bar(color="#4c78a8", stroke="white", strokeWidth=1).encode(
        x=x, x2="upper:Q",
        y=alt.Y("accuracy:Q", title="Accuracy in the bin", scale=alt.Scale(domain=[0, 1])), y2=alt.datum(0),
        tooltip=[alt.Tooltip("lower:Q", title="from", format=".3f"), alt.Tooltip("upper:Q", title="to", format=".3f"),
                 alt.Tooltip("count:Q", title="images"), alt.Tooltip("confidence:Q", title="mean confidence", format=".3f"),
                 alt.Tooltip("accuracy:Q", format=".3f")],
    )  # fmt: skip
    ideal = alt.Chart(pd.DataFrame({"lower": [0.0, 1.0], "accuracy": [0.0, 1.0]})).mark_line(
        color="#d62728", strokeDash=[5, 4]
    ).encode(x="lower:Q", y="accuracy:Q")  # fmt: skip
    title = alt.Title(f"Reliability: ECE {ece:.3f}", subtitle="Under the dashed line: overconfident", **TITLE)
    return alt.layer(bars, ideal).properties(height=240, title=title, autosize=FIT_X, padding=PADDING)

"""Charts of the Runs page: several runs overlaid, one colour per run; parallel coordinates and a scatter
in which the selected runs keep their colour and the others stay grey. Pure functions of DataFrames."""

from __future__ import annotations

import altair as alt
import pandas as pd

from lib.charts.style import PERCENT, PLOT_HEIGHT, SMALL_PLOT_HEIGHT, styled

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
OTHERS = "#c7c7c7"
X_TITLES = {"step": "Step (batches)", "epoch": "Epoch", "time": "Training time (s)"}


def run_colours(labels: list[str]) -> alt.Scale:
    """The one run -> colour mapping every chart of the page shares (palette order = selection order)."""
    return alt.Scale(domain=labels, range=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])


def overlay_loss_chart(steps: pd.DataFrame, labels: list[str], x: str = "step") -> alt.LayerChart:
    """Training loss of several runs: each run's raw steps pale, its smoothed loss on top in the same colour.

    Args:
        steps: columns run (label), line ("raw" | "smoothed"), step, epoch, time, train_loss, smoothed.
        labels: the runs in legend order.
        x: "step", "epoch" or "time".
    """
    colour = alt.Color("run:N", title="Run", scale=run_colours(labels), legend=alt.Legend(orient="bottom", columns=3))
    xq = alt.X(f"{x}:Q", title=X_TITLES[x])
    tip = [alt.Tooltip("run:N"), alt.Tooltip("step:Q"), alt.Tooltip("train_loss:Q", title="train loss", format=".4f")]
    raw = (
        alt.Chart(steps[steps["line"] == "raw"])
        .mark_line(opacity=0.25, strokeWidth=1)
        .encode(xq, alt.Y("train_loss:Q", title="Training loss (nats)"), colour, tooltip=tip)
    )
    smooth = (
        alt.Chart(steps[steps["line"] == "smoothed"])
        .mark_line(strokeWidth=2)
        .encode(xq, alt.Y("smoothed:Q", title="Training loss (nats)"), colour, tooltip=[*tip, "smoothed:Q"])
    )
    return styled(alt.layer(raw, smooth), "Training loss (pale: every step; solid: smoothed)", height=PLOT_HEIGHT)


def overlay_epoch_chart(epochs: pd.DataFrame, labels: list[str], metric: str, x: str = "step") -> alt.Chart:
    """A validation metric per epoch of several runs, lines with points, one colour per run."""
    pct = metric == "val_accuracy"
    data = epochs.assign(value=epochs[metric] * (100 if pct else 1), share=epochs[metric])
    title = "Validation accuracy (%)" if pct else "Validation loss (nats)"
    y = alt.Y("value:Q", title=title, scale=alt.Scale(domain=[0, 100]) if pct else alt.Scale(zero=False))
    chart = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            alt.X(f"{x}:Q", title=X_TITLES[x]),
            y,
            alt.Color("run:N", title="Run", scale=run_colours(labels), legend=None),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("share:Q", title="Validation accuracy", format=PERCENT)
                if pct
                else alt.Tooltip("value:Q", title=title, format=".4g"),
            ],
        )
    )
    return styled(chart, title.split(" (")[0], height=SMALL_PLOT_HEIGHT)


def overlay_metric_chart(data: pd.DataFrame, labels: list[str], name: str) -> alt.Chart:
    """An extra metric (one a logged or imported run recorded by name) of several runs against the step."""
    chart = (
        alt.Chart(data)
        .mark_line()
        .encode(
            alt.X("step:Q", title=X_TITLES["step"]),
            alt.Y("value:Q", title=name, scale=alt.Scale(zero=False)),
            alt.Color("run:N", title="Run", scale=run_colours(labels), legend=None),
            tooltip=[alt.Tooltip("run:N"), alt.Tooltip("step:Q"), alt.Tooltip("value:Q", title=name, format=".4g")],
        )
    )
    return styled(chart, name, height=SMALL_PLOT_HEIGHT)


AXIS_PX = 110  # room for an axis' name and its end values


def parallel_chart(data: pd.DataFrame, labels: dict[str, str], selected: list[str], axes: list[str]) -> alt.LayerChart:
    """Parallel coordinates: one line per run across its hyperparameters and metrics (each axis scaled
    0..1, min at the bottom); the selected runs in their colours, the others grey beneath them.

    Args:
        data: parallel_frame output (id, axis, scaled, value).
        labels: {run id: label}; selected: the selected run ids, in colour order; axes: axis order.
    """
    data = data.assign(run=data["id"].map(labels), chosen=data["id"].isin(selected))
    names = [labels[i] for i in selected]
    x = alt.X("axis:N", title=None, sort=axes, axis=alt.Axis(labelAngle=0, orient="top", labelLimit=140))
    y = alt.Y("scaled:Q", title=None, axis=None, scale=alt.Scale(domain=[-0.05, 1.05]))  # lines at 0 or 1 stay visible
    tip = [alt.Tooltip("run:N"), alt.Tooltip("axis:N"), alt.Tooltip("value:N")]
    base = alt.Chart(data).encode(x, y, detail="id:N", tooltip=tip)
    others = base.transform_filter("!datum.chosen").mark_line(color=OTHERS, opacity=0.6)
    chosen = base.transform_filter("datum.chosen").mark_line(strokeWidth=2.5, point=True)
    chosen = chosen.encode(alt.Color("run:N", scale=run_colours(names), title="Run", legend=None))
    rules = alt.Chart(pd.DataFrame({"axis": axes})).mark_rule(color="#888").encode(x)
    ends = data.loc[[*data.groupby("axis")["scaled"].idxmin(), *data.groupby("axis")["scaled"].idxmax()]]
    labels_ = (
        alt.Chart(ends.drop_duplicates(["axis", "scaled"]))
        .mark_text(align="left", dx=4, fontSize=11, color="#555")
        .encode(x, y, text="value:N")
    )  # each axis' lowest and highest value, so the scaled lines can be read back
    # A fixed width per axis (the page scrolls it in a narrow window): 150 px of column crushed six axes' ticks.
    chart = styled(alt.layer(rules, others, chosen, labels_), "Hyperparameters and results", height=PLOT_HEIGHT)
    return chart.properties(width=AXIS_PX * max(len(axes), 3), autosize=alt.AutoSizeParams(type="pad"))


def scatter_chart(
    summary: pd.DataFrame, x: str, y: str, labels: dict[str, str], selected: list[str], *, x_log: bool = False
) -> alt.LayerChart:
    """Any hyperparameter against any metric, one point per run; selected runs coloured, the others grey."""
    # Plain field names: Vega-Lite reads a dot in a field name ("hp.lr") as a nested field.
    data = pd.DataFrame({"id": summary["id"], "x": summary[x], "y": summary[y]})
    data = data.assign(run=data["id"].map(labels), chosen=data["id"].isin(selected))
    names = [labels[i] for i in selected]
    numeric = pd.api.types.is_numeric_dtype(data["x"]) and not pd.api.types.is_bool_dtype(data["x"])
    kind = "Q" if numeric else "N"
    xt = alt.X(
        f"x:{kind}", title=x.removeprefix("hp."), scale=alt.Scale(type="log") if numeric and x_log else alt.Undefined
    )
    yt = alt.Y("y:Q", title=y.replace("_", " "), scale=alt.Scale(zero=False))
    tip = [
        alt.Tooltip("run:N"),
        alt.Tooltip(f"x:{kind}", title=x.removeprefix("hp.")),
        alt.Tooltip("y:Q", title=y.replace("_", " "), format=".4g"),
    ]
    base = alt.Chart(data).encode(xt, yt, tooltip=tip)
    others = base.transform_filter("!datum.chosen").mark_circle(size=60, color=OTHERS)
    chosen = base.transform_filter("datum.chosen").mark_circle(size=120, opacity=1)
    chosen = chosen.encode(alt.Color("run:N", scale=run_colours(names), title="Run", legend=None))
    return styled(
        alt.layer(others, chosen), f"{y.replace('_', ' ')} against {x.removeprefix('hp.')}", height=PLOT_HEIGHT
    )

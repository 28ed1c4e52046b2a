"""Inside a run: update ratios, gradient norms, histograms, dead units and the machine's load.

Pure functions from lib/runs/inside.py's frames to alt.Chart, in the shared style (lib/charts/style.py).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from lib.charts.style import COLOURS, INT_AXIS, PERCENT, PLOT_HEIGHT, SMALL_PLOT_HEIGHT, styled

RATIO_CENTRE = -3.0  # log10 of the healthy update ratio (Karpathy's rule of thumb): the scale's white
RATIO_DOMAIN = [-6.0, 0.0]  # values beyond are drawn at the ends (clamped)
ROW_PX = 16  # px per layer in the heatmap


def layer_order(frame: pd.DataFrame) -> list[str]:
    """Tensor names in the model's order (the order they were first recorded in)."""
    return list(dict.fromkeys(frame["name"]))


def update_ratio_heatmap(norms: pd.DataFrame) -> alt.Chart:
    """log10(update ratio) by tensor (rows) and recorded step (columns), one diverging scale centred at -3."""
    data = norms.assign(log_ratio=np.log10(norms["update_ratio"].where(norms["update_ratio"] > 0))).dropna(
        subset=["log_ratio"]
    )
    names = layer_order(norms)
    steps = sorted(data["step"].unique())
    ticks = [int(s) for s in steps[:: max(1, len(steps) // 8)]]
    chart = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            alt.X("step:O", title="Step (batches)", axis=alt.Axis(values=ticks, labelAngle=0)),
            alt.Y("name:N", title="Tensor", sort=names),
            alt.Color(
                "log_ratio:Q",
                title="log10(update / weight)",
                scale=alt.Scale(
                    scheme="redblue", reverse=True, domainMid=RATIO_CENTRE, domain=RATIO_DOMAIN, clamp=True
                ),  # fmt: skip
                legend=alt.Legend(orient="bottom", gradientLength=220),
            ),
            tooltip=[
                alt.Tooltip("name:N", title="tensor"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("update_ratio:Q", title="update ratio", format=".2e"),
                alt.Tooltip("log_ratio:Q", title="log10", format=".2f"),
            ],
        )
    )
    return styled(chart, "Update ratio by layer", height=max(SMALL_PLOT_HEIGHT, ROW_PX * len(names)))


def grad_norm_chart(norms: pd.DataFrame) -> alt.Chart:
    """Each tensor's gradient norm by step on a log axis (zeros and non-finite values left out)."""
    data = norms[norms["grad_norm"] > 0]
    chart = (
        alt.Chart(data)
        .mark_line()
        .encode(
            alt.X("step:Q", title="Step (batches)", axis=alt.Axis(**INT_AXIS)),
            alt.Y("grad_norm:Q", title="Gradient L2 norm", scale=alt.Scale(type="log")),
            alt.Color("name:N", title="Tensor", sort=layer_order(norms), legend=alt.Legend(columns=4)),
            tooltip=[
                alt.Tooltip("name:N", title="tensor"),
                alt.Tooltip("step:Q", title="step"),
                alt.Tooltip("grad_norm:Q", title="gradient norm", format=".3e"),
            ],
        )
    )
    return styled(chart, "Gradient norm by layer", height=PLOT_HEIGHT)


def histogram_chart(hist: pd.DataFrame, name: str, which: str) -> alt.Chart:
    """One tensor's histogram (of its weights or gradients) per epoch: bins across, epochs down, colour = count."""
    data = hist[(hist["name"] == name) & (hist["which"] == which)]
    data = data.assign(log_count=np.log10(data["count"] + 1))
    label = "Weight" if which == "weight" else "Gradient"
    chart = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            alt.X("low:Q", title=f"{label} value", scale=alt.Scale(zero=False, nice=False)),
            alt.X2("high:Q"),
            alt.Y("epoch:O", title="Epoch"),
            alt.Color(
                "log_count:Q",
                title="log10(count + 1)",
                scale=alt.Scale(scheme="blues"),
                legend=alt.Legend(orient="bottom", gradientLength=160),
            ),  # fmt: skip
            tooltip=[
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("low:Q", title="from", format=".3e"),
                alt.Tooltip("high:Q", title="to", format=".3e"),
                alt.Tooltip("count:Q", title="values"),
            ],
        )
    )
    epochs = data["epoch"].nunique()
    return styled(chart, f"{label}s of {name} by epoch", height=max(SMALL_PLOT_HEIGHT // 2, 24 * epochs))


def dead_units_chart(dead: pd.DataFrame) -> alt.Chart:
    """The latest epoch's fraction of dead units after each ReLU, 0-100 %."""
    last = dead[dead["epoch"] == dead["epoch"].max()].assign(percent=lambda d: d["fraction"] * 100)
    chart = (
        alt.Chart(last)
        .mark_bar(color=COLOURS["validation"])
        .encode(
            alt.X("percent:Q", title="Dead units (% of the layer's channels)", scale=alt.Scale(domain=[0, 100])),
            alt.Y("name:N", title="ReLU", sort=layer_order(last)),
            tooltip=[
                alt.Tooltip("name:N", title="ReLU"),
                alt.Tooltip("epoch:Q"),
                alt.Tooltip("fraction:Q", title="dead", format=PERCENT),
                alt.Tooltip("units:Q", title="units"),
            ],
        )
    )
    return styled(chart, "Dead ReLU units (latest epoch)", height=max(60, 22 * len(last)))


def machine_chart(machine: pd.DataFrame, column: str) -> alt.Chart:
    """One machine figure (cpu_percent, rss_mb, gpu_percent or gpu_mem_mb) over the run's seconds."""
    titles = {
        "cpu_percent": ("CPU (% of one core)", "CPU"),
        "rss_mb": ("Resident memory (MiB)", "Memory"),
        "gpu_percent": ("GPU utilisation (%)", "GPU"),
        "gpu_mem_mb": ("GPU memory reserved (MiB)", "GPU memory"),
    }
    axis, title = titles[column]
    data = machine.assign(seconds=machine["time"] - machine["time"].min())
    chart = (
        alt.Chart(data)
        .mark_line(point=True, color=COLOURS["count"])
        .encode(
            alt.X("seconds:Q", title="Time since the first sample (s)"),
            alt.Y(f"{column}:Q", title=axis),
            tooltip=[
                alt.Tooltip("seconds:Q", format=".0f"),
                alt.Tooltip("step:Q"),
                alt.Tooltip(f"{column}:Q", title=axis, format=".1f"),
            ],  # fmt: skip
        )
    )
    return styled(chart, title, height=SMALL_PLOT_HEIGHT)


def overlay_ratio_chart(frame: pd.DataFrame, name: str) -> alt.Chart:
    """One tensor's update ratio by step for several runs (frame: run, step, update_ratio), log axis."""
    data = frame[frame["update_ratio"] > 0]
    chart = (
        alt.Chart(data)
        .mark_line()
        .encode(
            alt.X("step:Q", title="Step (batches)", axis=alt.Axis(**INT_AXIS)),
            alt.Y("update_ratio:Q", title="Update ratio (||Δw|| / ||w||)", scale=alt.Scale(type="log")),
            alt.Color("run:N", title="Run"),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("step:Q"),
                alt.Tooltip("update_ratio:Q", title="update ratio", format=".2e"),
            ],  # fmt: skip
        )
    )
    return styled(chart, f"Update ratio of {name}", height=PLOT_HEIGHT)

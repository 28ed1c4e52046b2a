"""What the Runs page compares, from the store's summaries: one row per run, the settings that differ,
and the curves of a few selected runs.

The table reads one summary query (per-run aggregates in SQL, RunStore.aggregates), never every step,
so it answers as fast for 200 runs of 2,000 steps as for three. Only the selected runs' steps are read.
"""

from __future__ import annotations

import math
from pathlib import PurePath

import numpy as np
import pandas as pd

from lib.charts.series import MAX_POINTS, downsample, ema
from lib.runs.store import RunRecord, RunStore
from lib.runs.sweeps import sweep_winner
from lib.runs.view import distinct_names

IGNORED_KEYS = ("name",)  # config keys that never count as a hyperparameter
LINKS = ("parent", "sweep")  # run columns other features may add; shown when present
METRICS = {
    "best_val_accuracy": "best val accuracy",
    "final_val_accuracy": "final val accuracy",
    "best_val_loss": "best val loss",
    "final_val_loss": "final val loss",
}
X_AXES = {"step": "Step (batches)", "epoch": "Epoch", "time": "Training time (s)"}


def summary_frame(store: RunStore, owner: str | None = None) -> pd.DataFrame:
    """One row per run (newest first): identity, status, dataset, model, every config key (prefixed
    `hp.`), best and final validation figures, duration, mean samples/s, created, note, links."""
    records = store.list_runs(owner)
    figures = store.aggregates()
    rows = [_summary_row(r, figures.get(r.id, {})) for r in records]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["id", "name", "status", "dataset", "model", *METRICS, "created"])
    if "sweep" in frame.columns:
        frame["sweep_winner"] = frame["id"].isin(sweep_winners(records))
    return frame


def sweep_winners(records: list[RunRecord]) -> set[str]:
    """The winning run of each sweep among records (sweep_winner's rule: best final val accuracy)."""
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        if _has_link(r, "sweep"):
            groups.setdefault(str(getattr(r, "sweep", None) or r.config.get("sweep")), []).append(r)
    return {w for w in (sweep_winner(runs) for runs in groups.values()) if w is not None}


def _summary_row(r: RunRecord, figures: dict) -> dict:
    end = r.ended if r.ended is not None else r.heartbeat
    row = {
        "id": r.id,
        "name": r.name,
        "status": str(r.status),
        "dataset": PurePath(r.root).name if r.root else "",
        "model": r.config.get("model", "?"),
        "best_val_accuracy": figures.get("best_val_accuracy"),
        "final_val_accuracy": r.final.get("val_accuracy"),
        "best_val_loss": figures.get("best_val_loss"),
        "final_val_loss": r.final.get("val_loss"),
        "epochs_done": figures.get("epochs_done") or 0,
        "steps": figures.get("last_step") or 0,
        "duration_s": max(0.0, end - r.created) if end is not None else None,
        "samples_per_sec": figures.get("samples_per_sec"),
        "created": pd.Timestamp(r.created, unit="s"),
        "note": figures.get("note") or "",
        "heartbeat": r.heartbeat,  # moves with every write: the key of a run's cached curves
    }
    row.update({f"hp.{k}": _cell(v) for k, v in r.config.items() if k not in IGNORED_KEYS})
    row.update({k: getattr(r, k, None) or r.config.get(k) for k in LINKS if _has_link(r, k)})
    return row


def _has_link(r: RunRecord, key: str) -> bool:
    return getattr(r, key, None) is not None or r.config.get(key) is not None


def _cell(value):
    """A config value as one table cell: lists and dicts as text, so every column has one type."""
    return str(value) if isinstance(value, (list, dict)) else value


def differing_keys(summary: pd.DataFrame) -> list[str]:
    """The `hp.` columns whose values are not all the same (a key some runs lack counts as differing)."""
    cols = [c for c in summary.columns if c.startswith("hp.")]
    return [c for c in cols if summary[c].astype(str).nunique(dropna=False) > 1]


def run_labels(summary: pd.DataFrame) -> dict[str, str]:
    """{run id: label}: the name, with the id's tail added where two runs share a name (view.distinct_names)."""
    return distinct_names(list(summary["id"]), list(summary["name"]))


def config_diff(summary: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """Only the config keys whose values differ between run_ids: one row per key, one column per run."""
    chosen = summary.set_index("id").loc[run_ids]
    keys = differing_keys(chosen.reset_index())
    labels = run_labels(summary)
    diff = chosen[keys].T.astype(object).where(chosen[keys].T.notna(), "—").map(_as_written)
    diff.index = [k.removeprefix("hp.") for k in keys]
    diff.columns = [labels[i] for i in run_ids]
    return diff


def _as_written(value) -> str:
    """A config value as the user set it: a column holding a gap turns 64 into 64.0, which reads as a float."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def curves(
    steps: pd.DataFrame, epochs: pd.DataFrame, *, batch_size: int, smoothing: float, max_points: int = MAX_POINTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's chart data: steps downsampled (min/max kept) with a smoothed loss, and its epochs; both
    carry the three x axes: `step`, `epoch` (fractional within an epoch for steps) and `time`.

    `time` is seconds of training summed from each step's recorded rate (batch_size / samples_per_sec);
    validation time is not in it. An epoch sits at its last step.
    """
    steps = steps.reset_index(drop=True)
    secs = batch_size / steps["samples_per_sec"].where(steps["samples_per_sec"] > 0)
    per_epoch = steps.groupby("epoch")["step"].agg(["min", "max"])
    length = per_epoch["max"] - per_epoch["min"] + 1
    if len(length) > 1:  # a run stopped early in its last epoch: that epoch is as long as the first, not whole
        length.iloc[-1] = max(length.iloc[-1], length.iloc[0])
    lo, n = per_epoch["min"].reindex(steps["epoch"]).to_numpy(), length.reindex(steps["epoch"]).to_numpy()
    frac = (steps["step"].to_numpy() - lo + 1) / n
    full = steps.assign(
        time=secs.fillna(0).cumsum(),
        epoch=steps["epoch"] - 1 + frac,
        smoothed=ema(steps["train_loss"].to_numpy(), smoothing) if smoothing and len(steps) else steps["train_loss"],
        epoch_of_step=steps["epoch"],
    )
    raw = downsample(full, "train_loss", max_points) if len(full) else full
    smooth = downsample(full, "smoothed", max_points) if len(full) else full
    ends = full.groupby("epoch_of_step")[["step", "time"]].last()
    ep = epochs.assign(
        step=[float(ends["step"].get(e, math.nan)) for e in epochs["epoch"]],
        time=[float(ends["time"].get(e, math.nan)) for e in epochs["epoch"]],
    )
    return pd.concat([raw.assign(line="raw"), smooth.assign(line="smoothed")], ignore_index=True), ep


def batch_size(row: pd.Series) -> int:
    """A summary row's batch size (1 when its config has none, as a logged run's may not)."""
    try:
        return max(1, int(row.get("hp.batch_size")))
    except (TypeError, ValueError):  # missing (None, NaN) or not a number
        return 1


def metric_series(metrics: pd.DataFrame, name: str, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """One extra metric of several runs (metrics: the store's METRIC_COLUMNS plus `run`), by step, each
    run's line downsampled to max_points with its minima and maxima kept."""
    rows = metrics[metrics["name"] == name].sort_values(["run", "step"])
    parts = [downsample(part, "value", max_points) for _, part in rows.groupby("run", sort=False)]
    return pd.concat(parts, ignore_index=True) if parts else rows


def parallel_frame(summary: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Long data for a parallel-coordinates chart: per run and axis, the value scaled to 0..1 and as text.

    Numbers scale linearly between the axis' min and max (log10 when all positive and spanning over
    10x, as learning rates do); text values are spread evenly in sorted order. A constant axis sits at 0.5.
    """
    parts = []
    for axis in axes:
        values = summary[axis]
        parts.append(
            pd.DataFrame(
                {
                    "id": summary["id"],
                    "axis": axis.removeprefix("hp."),
                    "scaled": _scaled(values),
                    "value": _text(values),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "axis", "scaled", "value"])


def _scaled(values: pd.Series) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    if values.notna().any() and numeric.notna().sum() == values.notna().sum() and values.map(type).ne(bool).all():
        x = numeric.to_numpy(dtype=float)
        if np.nanmin(x) > 0 and np.nanmax(x) > 10 * np.nanmin(x):
            x = np.log10(x)
    else:
        order = sorted(values.dropna().astype(str).unique())
        x = values.astype(str).map({v: i for i, v in enumerate(order)}).where(values.notna()).to_numpy(dtype=float)
    lo, hi = np.nanmin(x) if np.isfinite(x).any() else 0, np.nanmax(x) if np.isfinite(x).any() else 0
    return np.full(len(x), 0.5) if hi == lo else (x - lo) / (hi - lo)


def _text(values: pd.Series) -> list[str]:
    return ["—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}" if isinstance(v, float) else str(v)
            for v in values]  # fmt: skip


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell that a spreadsheet would run as a formula prefixed with `'` (OWASP's
    CSV injection rule): the table's own "Download as CSV" then writes inert text."""
    text = frame.select_dtypes(include="object")
    fixed = text.map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v)
    return frame.assign(**{c: fixed[c] for c in text.columns})

"""What a run's layers and process did, in the run store's tables `layer_norms`, `layer_histograms`,
`dead_units` and `machine` (created and healed with the rest, lib/runs/store.py).

Writers: the engine's recorder through StoreHooks (lib/runs/recorder.py says what a row holds), the
logger's `run.watch(model)`, the machine sampler (lib/runs/machine.py) and a bundle's import. Readers: the
Train and Runs pages, `python -m lib layers`, and export (a bundle's `<run_id>/inside.json`: `bundle_rows`,
read back through `checked_rows`, which refuses anything but plain numbers and names in range). No torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib.runs.store import RunStore, heals

if TYPE_CHECKING:
    import pandas as pd

NORM_COLUMNS = ["step", "epoch", "name", "weight_norm", "grad_norm", "update_ratio"]
HISTOGRAM_COLUMNS = ["epoch", "name", "which", "low", "high", "count"]
DEAD_COLUMNS = ["epoch", "name", "fraction", "units"]
MACHINE_COLUMNS = ["time", "step", "cpu_percent", "rss_mb", "gpu_percent", "gpu_mem_mb"]
_INSERT = {
    "norms": "INSERT OR REPLACE INTO layer_norms VALUES (?, ?, ?, ?, ?, ?, ?)",
    "histograms": "INSERT OR REPLACE INTO layer_histograms VALUES (?, ?, ?, ?, ?, ?)",
    "dead_units": "INSERT OR REPLACE INTO dead_units VALUES (?, ?, ?, ?, ?)",
    "machine": "INSERT OR REPLACE INTO machine VALUES (?, ?, ?, ?, ?, ?, ?)",
}


@heals
def write_rows(store: RunStore, run_id: str, kind: str, rows: list[tuple]) -> None:
    """Add rows of one kind ("norms", "histograms", "dead_units", "machine"), run id left out, in one transaction.

    Histogram rows carry their edges and counts as lists (stored as JSON).
    """
    if kind == "histograms":
        rows = [(e, n, w, json.dumps(edges), json.dumps(counts)) for e, n, w, edges, counts in rows]
    with store.transaction() as con:
        con.executemany(_INSERT[kind], [(run_id, *row) for row in rows])


# What a bundle carries of each kind: the columns write_rows takes, in its order.
_ROWS = {
    "norms": "SELECT step, epoch, name, weight_norm, grad_norm, update_ratio FROM layer_norms WHERE run_id = ?"
    " ORDER BY step, rowid",
    "histograms": "SELECT epoch, name, which, edges, counts FROM layer_histograms WHERE run_id = ? ORDER BY epoch, rowid",
    "dead_units": "SELECT epoch, name, fraction, units FROM dead_units WHERE run_id = ? ORDER BY epoch, rowid",
    "machine": f"SELECT {', '.join(MACHINE_COLUMNS)} FROM machine WHERE run_id = ? ORDER BY time",
}
MAX_BUNDLE_ROWS = 200_000  # per run, all kinds together (a bundle's metrics are bounded alike)
MAX_BINS = 1_000
MAX_NAME = 200  # characters of a tensor's or a ReLU's name
MAX_WHOLE = 2**53  # steps, epochs and unit counts: exact in JSON and float
MAX_BUNDLE_MB = 64  # an inside.json is read whole: refused above this before it is parsed


def bundle_rows(store: RunStore, run_id: str) -> dict[str, list[list]]:
    """Every row of each kind a run has (write_rows' shape: histogram edges and counts as lists); NaN and
    infinities, which SQLite keeps as NULL, are None."""
    out = {}
    for kind, sql in _ROWS.items():
        rows = [
            [None if isinstance(v, float) and not math.isfinite(v) else v for v in r]
            for r in _select(store, sql, run_id)
        ]
        if kind == "histograms":
            rows = [[e, n, w, json.loads(edges), json.loads(counts)] for e, n, w, edges, counts in rows]
        if rows:
            out[kind] = rows
    return out


# A cell's rule: "whole" (0..MAX_WHOLE), "name" (1..MAX_NAME characters), "number" (finite or None),
# "time" (seconds since 1970), "which" (weight or grad), "edges"/"counts" (lists of finite numbers/wholes).
_CELLS = {
    "norms": ("whole", "whole", "name", "number", "number", "number"),
    "histograms": ("whole", "name", "which", "edges", "counts"),
    "dead_units": ("whole", "name", "number", "whole"),
    "machine": ("time", "whole", "number", "number", "number", "number"),
}


def checked_rows(data: object) -> dict[str, list[tuple]]:
    """A bundle's inside.json as rows for write_rows, or ValueError saying what is wrong (untrusted input)."""
    if not isinstance(data, dict) or not set(data) <= set(_CELLS):
        raise ValueError(f"it must be an object with keys among {', '.join(_CELLS)}")
    if sum(len(rows) if isinstance(rows, list) else 0 for rows in data.values()) > MAX_BUNDLE_ROWS:
        raise ValueError(f"it has over {MAX_BUNDLE_ROWS:,} rows")
    out = {}
    for kind, rows in data.items():
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(_CELLS[kind]) for r in rows):
            raise ValueError(f"its {kind} must be a list of rows of {len(_CELLS[kind])} values")
        out[kind] = [tuple(_cell(rule, v, kind) for rule, v in zip(_CELLS[kind], row, strict=True)) for row in rows]
        for row in out[kind] if kind == "histograms" else ():
            if len(row[3]) != len(row[4]) + 1:
                raise ValueError("a histogram needs one edge more than it has counts")
    return out


def _cell(rule: str, value: object, kind: str):
    plain = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rule == "whole" and plain and value == int(value) and 0 <= value <= MAX_WHOLE:
        return int(value)
    if rule == "name" and isinstance(value, str) and 0 < len(value) <= MAX_NAME:
        return value
    if rule == "which" and value in ("weight", "grad"):
        return value
    if rule == "number" and (value is None or (plain and math.isfinite(value))):
        return None if value is None else float(value)
    if rule == "time" and plain and math.isfinite(value) and 0 <= value <= 2e10:
        return float(value)
    if rule == "finite" and plain and math.isfinite(value):
        return float(value)
    if rule in ("edges", "counts") and isinstance(value, list) and len(value) <= MAX_BINS + 1:
        return [_cell("finite" if rule == "edges" else "whole", v, kind) for v in value]
    raise ValueError(f"a {kind} row has {str(value)[:40]!r} where a {rule} belongs")


@heals
def _select(store: RunStore, sql: str, run_id: str) -> list[tuple]:
    if store.read_only and not store.path.exists():
        return []
    with store.transaction() as con:
        return [tuple(r) for r in con.execute(sql, (run_id,)).fetchall()]


def layer_norms(store: RunStore, run_id: str) -> pd.DataFrame:
    """NORM_COLUMNS by step then name (NaN where a value was not finite)."""
    import pandas as pd

    rows = _select(store, f"SELECT {', '.join(NORM_COLUMNS)} FROM layer_norms WHERE run_id = ? ORDER BY step, rowid",
                   run_id)  # fmt: skip
    frame = pd.DataFrame(rows, columns=NORM_COLUMNS)
    return frame.astype({c: "float64" for c in NORM_COLUMNS if c != "name"})


def histograms(store: RunStore, run_id: str) -> pd.DataFrame:
    """HISTOGRAM_COLUMNS: one row per bin (its low and high edge and count), by epoch, tensor, weight/grad."""
    import pandas as pd

    rows = _select(store, "SELECT epoch, name, which, edges, counts FROM layer_histograms WHERE run_id = ?"
                   " ORDER BY epoch, rowid", run_id)  # fmt: skip
    bins = []
    for epoch, name, which, edges, counts in rows:
        edges = json.loads(edges)
        bins += [(epoch, name, which, edges[i], edges[i + 1], c) for i, c in enumerate(json.loads(counts))]
    return pd.DataFrame(bins, columns=HISTOGRAM_COLUMNS)


def dead_units(store: RunStore, run_id: str) -> pd.DataFrame:
    """DEAD_COLUMNS by epoch, ReLUs in the order the model calls them."""
    import pandas as pd

    rows = _select(store, "SELECT epoch, name, fraction, units FROM dead_units WHERE run_id = ? ORDER BY epoch, rowid",
                   run_id)  # fmt: skip
    return pd.DataFrame(rows, columns=DEAD_COLUMNS)


def machine(store: RunStore, run_id: str) -> pd.DataFrame:
    """MACHINE_COLUMNS by time (seconds since the epoch); GPU columns NaN off CUDA."""
    import pandas as pd

    rows = _select(store, f"SELECT {', '.join(MACHINE_COLUMNS)} FROM machine WHERE run_id = ? ORDER BY time", run_id)
    return pd.DataFrame(rows, columns=MACHINE_COLUMNS).astype("float64")


def layers_json(store: RunStore, run_id: str) -> dict:
    """`python -m lib layers --json`: {"steps", "params": {name: {weight_norm, grad_norm, update_ratio}},
    "histograms": {name: {which: [{epoch, edges, counts}]}}, "dead_units": {name: [{epoch, fraction, units}]}}.

    Lists in "params" are aligned with "steps" (None where a tensor has no value at a step).
    """
    norms = layer_norms(store, run_id)
    steps = sorted(int(s) for s in norms["step"].unique())
    params = {}
    for name, group in norms.groupby("name", sort=False):
        at = group.set_index("step")
        params[name] = {c: [_plain(at[c].get(float(s))) for s in steps] for c in NORM_COLUMNS[3:]}
    hist: dict = {}
    rows = _select(store, "SELECT epoch, name, which, edges, counts FROM layer_histograms WHERE run_id = ?"
                   " ORDER BY epoch, rowid", run_id)  # fmt: skip
    for epoch, name, which, edges, counts in rows:
        hist.setdefault(name, {}).setdefault(which, []).append(
            {"epoch": epoch, "edges": json.loads(edges), "counts": json.loads(counts)}
        )
    dead: dict = {}
    for row in dead_units(store, run_id).itertuples(index=False):
        dead.setdefault(row.name, []).append(
            {"epoch": int(row.epoch), "fraction": row.fraction, "units": int(row.units)}
        )
    return {"steps": steps, "params": params, "histograms": hist, "dead_units": dead}


def _plain(value) -> float | None:
    """A JSON number: None for a missing or non-finite value (JSON has no NaN or Infinity)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class InsideView:
    """What the Train page's Inside view draws for a run (frames as the readers above return them)."""

    norms: pd.DataFrame
    histograms: pd.DataFrame
    dead_units: pd.DataFrame
    machine: pd.DataFrame
    sentences: list[str]  # lib/runs/rules.py's, for the rules that trip


def inside_view(store: RunStore, run_id: str) -> InsideView:
    """Everything the Inside view shows, read from the store (the page polls it while the run trains)."""
    from lib.runs.rules import findings

    norms, dead = layer_norms(store, run_id), dead_units(store, run_id)
    return InsideView(norms, histograms(store, run_id), dead, machine(store, run_id), findings(norms, dead))


def update_ratios(store: RunStore, run_ids: list[str], name: str, labels: dict[str, str]) -> pd.DataFrame:
    """(run, step, update_ratio) of tensor `name` in each run that recorded it, runs by their label."""
    import pandas as pd

    frames = []
    for run_id in run_ids:
        norms = layer_norms(store, run_id)
        one = norms[norms["name"] == name][["step", "update_ratio"]]
        frames.append(one.assign(run=labels.get(run_id, run_id)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "update_ratio", "run"])

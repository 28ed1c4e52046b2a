"""Plain sentences when a run's layers break a rule of thumb, from the store's layer records.

| rule | reads | threshold |
|------|-------|-----------|
| updates too large | median update ratio of a tensor over its last RECENT records | > 10^-1 (TOO_HIGH) |
| updates too small | the same | < 10^-5 (TOO_LOW), gradients not vanished |
| gradients vanished | gradient norm of a tensor at the latest record | < 1e-7 (VANISHED) |
| weights not finite | weight norm at the latest record | NaN or infinite |
| dead units | fraction of a ReLU's units that are 0 on every probe image, latest epoch | > 50 % (DEAD) |

The update ratio ||w_after - w_before|| / ||w_before|| is Karpathy's rule of thumb: about 10^-3 is
healthy; far above, each step rewrites a large part of the weights (the learning rate is too high); far
below, they barely move (too low). The alarm sits a factor 100 above it: Adam moves every weight by
about the learning rate, so this app's default recipe (adam at 1e-3) reads 10^-2 to 10^-1.5 on its conv
weights in its first epochs and learns well; a learning rate ten times too high reads 10^-1 and more. Only tensors with more than one dimension (weights, not biases or
norm scales) are judged, since a bias starts at zero and its ratio means little.
"""

from __future__ import annotations

import math

import pandas as pd

from lib.charts.numbers import percent

TOO_HIGH = 1e-1
TOO_LOW = 1e-5
VANISHED = 1e-7
DEAD = 0.5
RECENT = 5  # records per tensor the update-ratio rules take the median of: one odd step does not trip them
MAX_NAMED = 3  # tensors named per sentence; more are counted


def findings(norms: pd.DataFrame, dead: pd.DataFrame) -> list[str]:
    """The sentences for the rules that trip (see the module docstring), worst first within each rule.

    Args:
        norms: lib.runs.inside.layer_norms's frame (step, epoch, name, weight_norm, grad_norm, update_ratio).
        dead: lib.runs.inside.dead_units's frame (epoch, name, fraction, units).
    """
    out: list[str] = []
    if len(norms):
        judged = norms[norms["name"].map(is_weight)]
        latest = judged[judged["step"] == judged["step"].max()].set_index("name")
        ratio = judged.groupby("name", sort=False)["update_ratio"].apply(lambda s: s.tail(RECENT).median())
        out += _not_finite(latest)
        vanished = latest.index[latest["grad_norm"] < VANISHED].tolist()
        if vanished:
            out.append(f"{_names(vanished)}'s gradients vanished (norm < {VANISHED:g}): nothing reaches "
                       "them; check the loss, the learning rate schedule or the activations before them.")  # fmt: skip
        high = ratio[ratio > TOO_HIGH].sort_values(ascending=False)
        for name, value in high.head(MAX_NAMED).items():
            out.append(f"{name}'s updates are 10^{math.log10(value):.1f} of its weights: "
                       "the learning rate is likely too high.")  # fmt: skip
        low = ratio[(ratio < TOO_LOW) & ~ratio.index.isin(vanished)].sort_values()
        if len(low):
            out.append(f"{_names(low.index.tolist())}'s updates are below 10^{math.log10(TOO_LOW):.0f} of "
                       "their weights: the learning rate is likely too low.")  # fmt: skip
    out += _dead(dead)
    return out


def is_weight(name: str) -> bool:
    """Whether a tensor is judged: a weight (name ends in `weight`), not a bias or a norm's shift."""
    return name.endswith("weight")


def _not_finite(latest: pd.DataFrame) -> list[str]:
    bad = latest.index[~latest["weight_norm"].map(lambda v: v == v and math.isfinite(v))].tolist()
    if not bad:
        return []
    return [f"{_names(bad)}'s weights are no longer finite: the run has diverged; lower the learning rate."]


def _dead(dead: pd.DataFrame) -> list[str]:
    if dead.empty:
        return []
    last = dead[dead["epoch"] == dead["epoch"].max()]
    worst = last[last["fraction"] > DEAD].sort_values("fraction", ascending=False)
    return [
        f"{percent(row.fraction)} of the units after {row.name} output 0 for every probe image (dead ReLUs): "
        "lower the learning rate, or check the initialisation."
        for row in worst.head(MAX_NAMED).itertuples(index=False)
    ]


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")

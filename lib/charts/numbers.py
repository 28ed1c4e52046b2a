"""How every page writes a number that is a share, in Python and in d3-format; no plotting import here, so the
command line and lib/runs use it too."""

from __future__ import annotations

# One way to write a share (an accuracy, a probability, a share of images) on every page: a percent with one
# decimal, 0.9734 -> "97.3%". PERCENT is its d3 format (chart tooltips, legends, labels); `percent` writes it in
# Python (metrics, captions, buttons); tables use lib.app.numbers.percent_column. Only axis ticks and the small
# cells of a confusion matrix use PERCENT_SHORT (whole percents), where a decimal does not fit.
PERCENT = ".1%"
PERCENT_SHORT = ".0%"


def percent(share: float | None) -> str:
    """A share 0..1 as every page writes it: 0.9734 -> "97.3%", 1 -> "100.0%"; None or NaN -> "–"."""
    if share is None or share != share:
        return "–"
    return f"{share:{PERCENT}}"

"""Scores that are one count over another (accuracy, recall, precision, F1), in float64.

Validation accuracy while training and every count-based metric on Evaluate go through `fraction`, so
the same counts give the same float: Evaluate's accuracy of a run equals the recorded one with ==.
"""

from __future__ import annotations

import numpy as np


def fraction(count, total):
    """count / total in float64 (0.0 where total is 0): the integers' quotient, correctly rounded.

    Args:
        count, total: integers (or integer-valued floats, exact below 2**53), or numpy arrays of them.

    Returns:
        A float for scalars, a float64 array for arrays.
    """
    count, total = np.asarray(count, dtype=np.float64), np.asarray(total, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(count.shape, total.shape))
    np.divide(count, total, out=out, where=total != 0)
    return float(out) if out.ndim == 0 else out

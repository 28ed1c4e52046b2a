"""One way to write a share on every page and the command line: a percent with one decimal."""

from __future__ import annotations

import math

import pytest

from lib.app.numbers import percent_column
from lib.charts.numbers import PERCENT, percent


@pytest.mark.parametrize(
    "share, text",
    [
        (0.9734, "97.3%"),  # hand-computed: 97.34 -> 97.3
        (0.97351, "97.4%"),  # 97.351 rounds up
        (2 / 3, "66.7%"),
        (1.0, "100.0%"),  # the decimal stays: 100.0% beside 97.3% in a column
        (0.0, "0.0%"),
        (0.00049, "0.0%"),
        (0.12, "12.0%"),
    ],
)
def test_percent_writes_one_decimal(share, text):
    assert percent(share) == text


def test_a_missing_share_is_a_dash_not_nan_percent():
    assert percent(None) == percent(math.nan) == "–"


def test_charts_and_tables_use_the_same_rule():
    assert PERCENT == ".1%"  # d3-format's ".1%" writes 0.9734 as "97.3%", as percent() does
    config = percent_column("acc")
    # Streamlit's "percent" shows as many decimals as the step has beyond two (checked in Chromium: 97.3%).
    assert (
        config["type_config"]["format"] == "percent"
        and config["type_config"]["step"] == 0.001
        and config["label"] == "acc"
    )

"""Numbers in tables as every page writes them: a share as a percent with one decimal (lib.charts.style.percent's
rule, 0.9734 -> 97.3%), so Train, Runs and Evaluate cannot drift apart again (Runs showed 97.34%, Train 97.3%).
"""

from __future__ import annotations

import streamlit as st

from lib.charts.numbers import percent  # noqa: F401 - re-exported: pages write a share with lib.app.numbers.percent


def percent_column(label: str, **kwargs) -> st.column_config.NumberColumn:
    """A st.dataframe column of shares 0..1 shown as "97.3%" (sorting and downloads keep the shares).

    Streamlit's "percent" format shows as many decimals as the step has beyond two: step 0.001, one decimal.
    """
    return st.column_config.NumberColumn(label, format="percent", step=0.001, **kwargs)

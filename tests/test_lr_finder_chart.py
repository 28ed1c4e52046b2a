"""The LR finder chart: log x axis, non-finite losses left out, the suggestion drawn where it is."""

import math

from lib.charts.lr_finder import lr_finder_chart, lr_finder_frame


def test_chart_has_a_log_axis_the_suggestion_and_only_finite_points():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    frame = lr_finder_frame(lrs, [1.4, 1.2, 0.6, 2.0, math.inf], [1.4, 1.3, 1.0, 1.3, math.nan])
    assert list(frame["lr"]) == lrs[:4]
    spec = lr_finder_chart(frame, 1e-3).to_dict()
    lines, rule, text = spec["layer"]
    assert lines["encoding"]["x"]["scale"]["type"] == "log"
    assert spec["datasets"][rule["data"]["name"]] == [{"lr": 1e-3, "label": "suggested 0.001"}]
    assert lines["encoding"]["y"]["scale"]["domain"][1] == 4 * 1.0  # 4x the smoothed minimum
    assert len(spec["datasets"][lines["data"]["name"]]) == 8  # 4 batches x (raw, smoothed)

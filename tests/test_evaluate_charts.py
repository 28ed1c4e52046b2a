"""The confusion heatmap's colours, read from its Vega-Lite spec: empty cells blank, one mistake visible."""

import numpy as np

from lib.charts.evaluate import confusion_frame, confusion_heatmap


def colour_layers(spec: dict) -> dict[str, dict]:
    """{legend title: layer} of the layers coloured by value."""
    return {
        layer["encoding"]["color"]["title"]: layer
        for layer in spec["layer"]
        if layer.get("encoding", {}).get("color", {}).get("field") == "value"
    }


def test_empty_cells_are_blank_and_a_single_mistake_has_its_own_scale():
    confusion = np.array([[500, 1, 0], [0, 480, 0], [2, 0, 300]])  # hand-made: 3 mistakes among 1,283 images
    spec = confusion_heatmap(confusion_frame(confusion, ["a", "b", "c"]), ["a", "b", "c"]).to_dict()
    data = spec["datasets"]
    layers = colour_layers(spec)
    assert set(layers) == {"Counts, right", "Counts, mistakes"}
    right, wrong = (data[layers[t]["data"]["name"]] for t in ("Counts, right", "Counts, mistakes"))
    assert sorted(r["count"] for r in right) == [300, 480, 500]  # the diagonal only
    assert sorted(r["count"] for r in wrong) == [1, 2]  # the mistakes only: the 4 zero cells get no colour
    # The mistakes' scale ends at the largest mistake (2), not at 500, and starts past white.
    scale = layers["Counts, mistakes"]["encoding"]["color"]["scale"]
    assert scale["domain"] == [0, 2] and scale["scheme"]["extent"][0] > 0
    # Every cell (zeros too) is still clickable, on top of the colours.
    cells = next(layer for layer in spec["layer"] if layer.get("name") == "cells")
    assert len(data[cells["data"]["name"]]) == 9 and cells["mark"]["fill"] == "transparent"
    assert spec["autosize"]["type"] == "fit-x"  # follows its column: all classes in view at 800 px

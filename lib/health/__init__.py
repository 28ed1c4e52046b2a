"""Dataset health: duplicates, likely wrong labels and outliers. Only lib.health.quick imports torch.

The knobs below live here, free of numpy, so that `python -m lib --help` can state them without loading the
modules that use them.
"""

NEAR_THRESHOLD = 8  # near duplicates: perceptual hashes at most this many bits of 64 apart (the page's slider)
MAX_THRESHOLD = 16  # the most the slider and --threshold allow
# The label check's quick models: auto (a linear probe on a pretrained backbone when its weights are in torch
# hub's cache, else the small cnn), probe, cnn, and two on the pixels alone (linear: logistic regression; knn).
MODELS = ("auto", "probe", "cnn", "linear", "knn")

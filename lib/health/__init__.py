"""Dataset health: duplicates, likely wrong labels and outliers. Imports no torch.

The knobs below live here, free of numpy, so that `python -m lib --help` can state them without loading the
modules that use them.
"""

NEAR_THRESHOLD = 8  # near duplicates: perceptual hashes at most this many bits of 64 apart (the page's slider)
MAX_THRESHOLD = 16  # the most the slider and --threshold allow
MODELS = ("linear", "knn")  # the label check's quick models

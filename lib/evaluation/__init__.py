"""What a trained run does on its validation split: predictions stored with the run (predictions.py),
the metrics computed from them (metrics.py), and how it decides: attributions (attributions.py),
feature maps (features.py) and embeddings (embeddings.py).

Everything here starts from a checkpoint (lib.training.checkpoint.load_model) and never imports
streamlit; pages reach it through lib/app/cache.py, the command line through lib/commands/.
"""

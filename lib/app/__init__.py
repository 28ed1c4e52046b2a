"""The only package that imports streamlit: caching wrappers over the plain functions below, per-visitor session folders, and background jobs with progress."""

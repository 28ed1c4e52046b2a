"""The only package that imports streamlit: caching wrappers over the plain functions below, per-visitor session folders, and background jobs with progress.

Importing it changes nothing in Streamlit: the repairs of Streamlit's internals are in lib/app/repairs.py,
installed by the router and by every page.
"""

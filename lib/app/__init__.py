"""The only package that imports streamlit: caching wrappers over the plain functions below, per-visitor session folders, and background jobs with progress.

Importing it also repairs one routing trap. A `pages/` folder beside streamlit_app.py makes Streamlit
start each server in its old multipage mode (PagesManager.uses_pages_directory) until the router's
st.navigation runs once; when the server's first visit is a deep link (`/channels?class=cat`), that
mode runs pages/channels.py alone, without the router's data-source sidebar and navigation, and stays
so for every visitor until someone opens `/`. Every page imports this package, so the first script run
of the server turns the old mode off and reruns, and the router then draws the linked page as usual.
"""

from streamlit.runtime.pages_manager import PagesManager

if PagesManager.uses_pages_directory:
    import streamlit as _st

    PagesManager.uses_pages_directory = False
    _st.rerun()

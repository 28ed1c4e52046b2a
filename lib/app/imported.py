"""An imported run's dataset folder, picked by its owner: the folder its bundle named was another machine's.

Evaluate and Explain read an imported run's validation images only from the dataset open in the sidebar
(deployed: the visitor's own upload, a built-in or the sample; local: a folder the user opened), once the
user says so and its classes are the run's. Widget key: imported_use_dataset (button "Use this dataset").
Session state read: dataset_root.
"""

from __future__ import annotations

import streamlit as st

from lib.app import cache
from lib.app.text import plain, plain_error
from lib.runs.importer import pick_dataset
from lib.runs.store import RunRecord, RunStore
from lib.runs.view import dataset_name


def dataset_picked(record: RunRecord, store: RunStore) -> bool:
    """True when the run has its dataset folder; else offers the sidebar's dataset and returns False."""
    if record.root:
        return True
    root = st.session_state.get("dataset_root")
    st.info(
        f"Run {plain(record.name)} was imported, so the dataset it was trained on is not known here. "
        f"Open that dataset in the sidebar (now: {plain(dataset_name(root or ''))}), then use it for this run."
    )
    if root and st.button("Use this dataset", key="imported_use_dataset"):
        try:
            classes = cache.current_index(root).classes
        except ValueError as e:
            st.error(plain_error(e))
            return False
        if list(classes) != list(record.classes):
            st.error("The dataset in the sidebar has other classes than this run; open the one it was trained on.")
            return False
        pick_dataset(store, record.id, root)
        st.rerun()
    return False

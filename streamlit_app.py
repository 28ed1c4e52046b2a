"""Torchscope: the router. Page config, the shared data-source sidebar, navigation over pages/."""

import os
import uuid

import streamlit as st

from lib.app import cache, repairs, sessions, state
from lib.app.text import plain
from lib.data.folders import check_disk
from lib.data.sources import (
    KINDS,
    Source,
    check_dataset_limits,
    resolve_root,
    source_from_params,
    source_to_params,
    upload_path,
    upload_target,
)
from lib.settings import runs_dir

# Widget keys of the shared sidebar.
KEY_KIND, KEY_PATH, KEY_UPLOAD, KEY_BUILTIN, KEY_BUILTIN_ROOT, KEY_OPEN, KEY_DOWNLOAD = (
    "source_kind",
    "source_path",
    "source_upload",
    "builtin_name",
    "builtin_root",
    "source_open",
    "builtin_download",
)
SOURCE_PARAMS = ("source", "path", "name", "root", "id")
LABELS = {
    "sample": "Built-in sample",
    "folder": "Folder on the server",
    "zip": ".zip on the server",
    "upload": "Upload a .zip",
    "builtin": "torchvision built-in",
}


def open_source(source: Source) -> bool:
    """Resolve a source to a folder and make it this session's dataset; say why when it can't."""
    settings = cache.settings()
    try:
        root = str(resolve_root(source, settings, sessions.session_dir(st.session_state.session_id)))
        if settings.deployed:
            index = cache.header_index(root)
            check_dataset_limits(index.num_images, sum(h.width * h.height for h in index.headers), settings)
    except ValueError as e:
        st.session_state.source_error = str(e)
        if source.kind == "upload":  # a refused upload leaves nothing on disk
            sessions.clear_uploads(st.session_state.session_id)
        return False
    st.session_state.source_error = None
    st.session_state.source = source
    st.session_state.dataset_root = root
    st.query_params.from_dict({**_other_params(), **source_to_params(source)})
    return True


def _other_params() -> dict:
    return {k: v for k, v in st.query_params.to_dict().items() if k not in SOURCE_PARAMS}


def sync_source_params() -> None:
    """Keep the URL naming this session's source on every page (a page switch clears the query string)."""
    wanted = source_to_params(st.session_state.source)
    for name, value in wanted.items():
        state.set_param(name, value)
    state.drop_params([p for p in SOURCE_PARAMS if p not in wanted])


def prefill_inputs(source: Source) -> None:
    """The sidebar inputs show the source that is open (e.g. one from a link), so Open works at once."""
    if source.kind in ("folder", "zip") and not st.session_state.get(KEY_PATH):
        st.session_state[KEY_PATH] = source.value
    if source.kind == "builtin" and not st.session_state.get(KEY_BUILTIN_ROOT):
        st.session_state[KEY_BUILTIN] = source.value
        st.session_state[KEY_BUILTIN_ROOT] = source.root


def init_session() -> None:
    """A new visitor: an id of their own, then the source their link names (or the sample)."""
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex
    if "dataset_root" not in st.session_state:
        uploads = sessions.session_dir(st.session_state.session_id) / "uploads"
        source, why = source_from_params(st.query_params.to_dict(), cache.settings(), uploads)
        if not open_source(source):
            why = st.session_state.source_error
            open_source(Source("sample"))
        st.session_state.source_error = why
    sync_source_params()
    sessions.touch(st.session_state.session_id)
    cache.sweep_idle_sessions(st.session_state.session_id)


def allowed_kinds() -> list[str]:
    s = cache.settings()
    if not s.deployed:
        return list(KINDS)
    return ["sample", "upload"] + (["builtin"] if s.builtin_root else [])


def source_inputs(kind: str) -> Source | None:
    """The inputs for one kind of source; the Source they describe, or None while incomplete."""
    if kind == "sample":
        return Source("sample")
    if kind in ("folder", "zip"):
        hint = "/data/my_images" if kind == "folder" else "/data/my_images.zip"
        # Enter (or leaving the box) opens the path: Open was disabled until the box committed, so the first
        # click only committed the text and a second click opened it.
        path = st.text_input("Path", key=KEY_PATH, placeholder=hint, on_change=_path_entered).strip()
        return Source(kind, path) if path else None
    if kind == "upload":
        return uploaded_source()
    from lib.data.builtins import BUILTINS, builtin_available

    name = st.selectbox("Dataset", BUILTINS, key=KEY_BUILTIN)
    if cache.settings().deployed:
        return Source("builtin", name)
    root = st.text_input("Folder holding its files", key=KEY_BUILTIN_ROOT, placeholder="~/data").strip()
    if root and not builtin_available(name, os.path.expanduser(root)):
        st.caption(f"{plain(name)}'s files are not in that folder.")
        if st.button(f"Download {name} there", key=KEY_DOWNLOAD, help="Needs a connection to the internet."):
            download(name, os.path.expanduser(root))
    return Source("builtin", name, os.path.expanduser(root)) if root else None


def _path_entered() -> None:
    st.session_state._path_entered = True


def download(name: str, root: str) -> None:
    """Fetch a built-in dataset with torchvision, only because the user asked; say so when offline."""
    from lib.data.builtins import download_builtin

    with st.spinner(f"Downloading {name}…"):
        try:
            download_builtin(name, root)
            st.session_state.source_error = None
        except ValueError as e:
            st.session_state.source_error = str(e)


def uploaded_source() -> Source | None:
    """An uploaded .zip, stored under this session's folder; None until one is uploaded."""
    limit = cache.settings().max_upload_mb
    up = st.file_uploader(
        f"ImageFolder as .zip (up to {limit} MB)", type=["zip"], key=KEY_UPLOAD, max_upload_size=limit
    )
    if up is None:
        return None
    try:
        if up.size > limit * 2**20:
            st.session_state.source_error = (
                f"{up.name} is {up.size / 2**20:.0f} MB, over this app's {limit} MB limit; upload a smaller archive."
            )
            return None
        data = up.getvalue()
        session = sessions.session_dir(st.session_state.session_id)
        target = upload_target(data, up.name, session / "uploads")
        if str(target) == st.session_state.get("_last_upload"):
            return Source("upload", str(target))  # handled on an earlier run
        return store_upload(data, up.name, session, target)
    finally:
        sessions.release_upload(up)  # stored on disk or refused: its bytes need not stay in memory


def store_upload(data: bytes, name: str, session, target) -> Source | None:
    """A new upload replaces the session's previous one; it is written only when the disk quota allows."""
    if st.session_state.source.kind == "upload":
        open_source(Source("sample"))  # its files go now
    sessions.clear_uploads(st.session_state.session_id)
    settings = cache.settings()
    try:
        store = cache.run_store(str(runs_dir()))
        runs = sessions.runs_bytes(store, st.session_state.session_id if settings.deployed else None)
        check_disk(len(data), session, settings.max_session_mb, settings.max_disk_mb, also_used=runs)
        return Source("upload", str(upload_path(data, name, target.parent)))
    except (ValueError, OSError) as e:
        st.session_state.source_error = (
            str(e) if isinstance(e, ValueError) else f"The upload could not be stored ({e.strerror}); try again."
        )
        st.session_state._last_upload = str(target)  # say it once, not on every rerun
        return None


def sidebar() -> None:
    with st.sidebar:
        st.subheader("Data source")
        kinds = allowed_kinds()
        if st.session_state.get(KEY_KIND) not in kinds:
            current = st.session_state.source.kind
            st.session_state[KEY_KIND] = current if current in kinds else "sample"
            prefill_inputs(st.session_state.source)
        kind = st.radio("Source", kinds, format_func=LABELS.get, key=KEY_KIND, label_visibility="collapsed")
        chosen = source_inputs(kind)
        # A new upload opens by itself: choosing the file was the intent.
        if (
            kind == "upload"
            and chosen
            and chosen != st.session_state.source
            and chosen.value != st.session_state.get("_last_upload")
        ):
            st.session_state._last_upload = chosen.value
            with st.spinner("Opening the archive…"):
                open_source(chosen)
        else:
            clicked = st.button("Open", key=KEY_OPEN, type="primary", width="stretch")
            entered = st.session_state.pop("_path_entered", False) and chosen != st.session_state.source
            if (clicked or entered) and chosen is None:
                st.caption("Type a path, then Open (or press Enter).")
            elif clicked or entered:
                with st.spinner("Opening…"):
                    open_source(chosen)
        if st.session_state.get("source_error"):
            st.error(plain(st.session_state.source_error))
        st.caption(f"Showing: {plain(st.session_state.source.label())}")


@st.fragment(run_every=60)
def heartbeat() -> None:
    """An open tab keeps its session alive: idle means closed, not merely quiet."""
    sessions.touch(st.session_state.session_id)


def main() -> None:
    repairs.install()
    st.set_page_config(page_title="Torchscope", page_icon="🔬", layout="wide")
    init_session()
    heartbeat()
    sidebar()
    nav = st.navigation(
        [
            st.Page(
                "pages/dataset.py", title="Dataset", icon=":material/photo_library:", url_path="dataset", default=True
            ),
            st.Page("pages/channels.py", title="Channels", icon=":material/palette:", url_path="channels"),
            st.Page("pages/health.py", title="Health", icon=":material/health_and_safety:", url_path="health"),
            st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
            st.Page("pages/runs.py", title="Runs", icon=":material/compare_arrows:", url_path="runs"),
            st.Page("pages/evaluate.py", title="Evaluate", icon=":material/grid_on:", url_path="evaluate"),
            st.Page("pages/explain.py", title="Explain", icon=":material/center_focus_strong:", url_path="explain"),
        ]
    )
    nav.run()


# Imported by tests that drive the sidebar alone (AppTest drops a router's sidebar after its first run).
if __name__ == "__main__":
    main()

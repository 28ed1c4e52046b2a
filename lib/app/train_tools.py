"""The Train page's tools beyond one run: Train more (continue a run), a sweep's status and Stop, and
the learning-rate finder. Drawn by pages/train.py; each keeps what must survive a page switch under
its own session-state key.

Widget keys: train_more_epochs, train_more (button "Train more"; runs_more_* on the Runs page),
train_sweep_stop ("Stop sweep"), train_lrf_use ("Use this learning rate"), chart key train_lrf_chart.
Session state written: train_follow (a run to show on the next rerun), train_sweep (the sweep this
session started), train_sweep_followed (its newest run, shown once), train_lrf (the finder's process and
output file), train_lrf_result (its JSON); "Use this learning rate" sets the sidebar's kept train_lr.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from lib.app import sessions
from lib.app.state import set_value
from lib.app.text import plain, plain_error
from lib.charts.lr_finder import lr_finder_chart, lr_finder_frame
from lib.runs.status import Status
from lib.runs.store import RunRecord, RunStore
from lib.runs.sweeps import get_sweep, request_sweep_stop, sweep_runs
from lib.settings import Settings
from lib.training.config import TrainConfig
from lib.training.resume import RESUMABLE
from lib.training.runner import continue_run, start_finder


def follow(run_id: str) -> None:
    """Show run_id after the rerun (the runs picker is already drawn in this one)."""
    st.session_state.train_follow = run_id
    st.rerun()


def take_followed() -> None:
    """Before the runs picker is drawn: select the run asked for by follow()."""
    if "train_follow" in st.session_state:
        set_value("train_run", st.session_state.pop("train_follow"))


def train_more(
    record: RunRecord, store: RunStore, owner: str, settings: Settings, *, key: str = "train", switch: bool = False
) -> None:
    """For a stopped, completed or interrupted run: N more epochs from its last checkpoint, as a new run.
    Widget keys are `{key}_more_epochs` and `{key}_more`; with switch the Train page opens on the new run."""
    if record.status not in RESUMABLE or not store.files.checkpoint_path(record.id, "last").exists():
        return
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    more = left.number_input("More epochs", 1, settings.max_epochs, 1, key=f"{key}_more_epochs")
    if right.button("Train more", key=f"{key}_more", help="continue from the last checkpoint as a new, linked run"):
        try:
            visitor = sessions.visitor_id(owner, st.context.ip_address, st.context.headers.get("User-Agent"))
            sessions.check_room_for_runs(owner, settings, store)
            child = continue_run(record.id, int(more), store, owner, settings=settings, visitor=visitor)
        except ValueError as e:
            st.warning(plain_error(e))
            return
        if switch:
            st.session_state.train_follow = child
            st.switch_page("pages/train.py")
        follow(child)


def parent_note(record: RunRecord, store: RunStore, first_step: int) -> None:
    """Say where a continued run comes from and where its own steps begin."""
    if record.parent:
        parent = store.get_run(record.parent)
        name = parent.name if parent is not None else record.parent
        st.caption(
            plain(f"Continues run {name} from step {first_step - 1:,}: the curves up to there are its parent's.")
        )


def sweep_panel(sweep_id: str, store: RunStore) -> None:
    """The sweep's progress and a Stop for the whole sweep; each new run of the sweep is shown as it starts."""
    sweep = get_sweep(store, sweep_id)
    if sweep is None:
        return

    @st.fragment(run_every=1.0 if sweep.status == Status.RUNNING else None)
    def live() -> None:
        now, mine = get_sweep(store, sweep_id), sweep_runs(store, sweep_id)
        if mine and mine[-1].id != st.session_state.get("train_sweep_followed"):
            st.session_state.train_sweep_followed = mine[-1].id  # follow each new run once; the picker stays free
            follow(mine[-1].id)
        if now.status != sweep.status:
            st.rerun(scope="app")
        done = sum(r.status != Status.RUNNING for r in mine)
        text = f"Sweep {now.id}: {done} of {now.total} runs finished; {now.status}. {now.message}"
        (st.info if now.status == Status.RUNNING else st.success)(plain(text))
        if now.status == Status.RUNNING and st.button("Stop sweep", key="train_sweep_stop"):
            request_sweep_stop(store, sweep_id)
            st.toast("Stopping the sweep: its running run stops after the current batch, no further run starts.")

    live()


def start_lr_finder(config: TrainConfig, root: str, store: RunStore, session_id: str, settings: Settings) -> None:
    """Start `python -m lib lr-find` for config in its own process (a short training, outside the script run),
    in a training slot as a run takes one.

    Raises:
        ValueError: when config is over the server's limits or no slot is free (the page says it).
    """
    visitor = sessions.visitor_id(session_id, st.context.ip_address, st.context.headers.get("User-Agent"))
    out = store.root / "lr-find" / f"{session_id}.log"
    proc = start_finder(config, root, store, out, session_id, settings, visitor)
    st.session_state.train_lrf = {"proc": proc, "out": str(out)}
    st.session_state.pop("train_lrf_result", None)
    st.session_state.pop("train_lrf_used", None)  # a new sweep: its panel opens again


def lr_finder_panel() -> None:
    """The finder's progress (polled while its process runs), then its chart and a button that puts the
    suggestion in the sidebar; the result is drawn outside the poll, so that button reruns the whole page."""
    job = st.session_state.get("train_lrf")
    if job is None and "train_lrf_result" not in st.session_state:
        return
    used = st.session_state.get("train_lrf_used")
    # Closed once its suggestion is used (a new label: Streamlit keeps an expander's state under its label),
    # so the run below moves back up; open while it runs and until then.
    label = f"Learning-rate finder: {used:g} used" if used is not None and job is None else "Learning-rate finder"
    with st.expander(label, expanded=used is None or job is not None):
        if job is None:
            lr_finder_result(st.session_state.train_lrf_result)
            return

        @st.fragment(run_every=1.0)
        def poll() -> None:
            if job["proc"].poll() is None:
                st.info("Finding a learning rate: about 100 batches at growing rates…")
                return
            st.session_state.train_lrf_result = _read_result(job["proc"].returncode, Path(job["out"]))
            del st.session_state.train_lrf
            st.rerun(scope="app")

        poll()


def _read_result(code: int | None, out: Path) -> dict:
    """The finder's JSON (its output's last line), or {"error": its one-line reason}."""
    lines = out.read_text(errors="replace").strip().splitlines() if out.exists() else []
    if code == 0 and lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    return {"error": lines[-1].removeprefix("error: ") if lines else f"The finder exited with code {code}."}


def lr_finder_result(result: dict) -> None:
    """Chart and suggestion of a finished sweep; "Use this learning rate" sets the sidebar's lr."""
    if "error" in result:
        st.warning(plain(result["error"]))
        return
    frame = lr_finder_frame(result["lrs"], result["losses"], result["smoothed"])
    suggested = result["suggested_lr"]
    if frame.empty or suggested is None:
        st.warning("Every batch's loss was non-finite; turn normalization on or lower the start rate.")
        return
    lr = float(f"{suggested:.2g}")
    st.altair_chart(lr_finder_chart(frame, suggested), width="stretch", key="train_lrf_chart")
    clipped = float(frame["loss"].max()) > 4 * float(frame["smoothed"].min())  # lr_finder_chart's y limit
    tail = " The y axis stops at 4x the smoothed minimum: the diverging tail above it is clipped." if clipped else ""
    st.caption(plain(f"Suggested learning rate {lr:g}: {result['rule']}. {len(frame)} batches.{tail}"))
    st.button("Use this learning rate", key="train_lrf_use", on_click=_use_lr, args=(lr,))


def _use_lr(lr: float) -> None:
    st.session_state.train_lrf_used = lr
    set_value("train_lr", lr)  # kept across page switches; the slider's options include the kept value

"""Train: hyperparameters in the sidebar, Start, watch loss and accuracy draw live, Stop, revisit any run.

Widget keys (stable, for tests and URLs):
    train_model (type to search), train_model_file (local mode: FILE.py:build), train_pretrained, train_weights
    (DEFAULT or a weights name of the model), train_finetune,
    train_backbone_lr_scale, train_download_weights ("Download weights"), train_epochs, train_batch_size, train_lr, train_optimizer, train_weight_decay,
    train_schedule, train_image_size, train_random_crop, train_hflip, train_rotation, train_color_jitter,
    train_normalization, train_resize (square or weights), train_val_split, train_seed,
    train_max_batches, train_name, train_start (label "Start"), train_stop (label "Stop"),
    train_run (runs list, mirrored in the URL as ?run=), train_use_settings ("Use this run's settings"),
    train_smoothing; sweep: train_sweep_param1/2 (hyperparameter or "none"), train_sweep_values1/2
    (comma-separated values), train_sweep_start ("Start sweep"); train_lr_find ("Find learning rate");
    lib/app/train_tools.py lists the keys of Train more, Stop sweep and the finder. No st.form: a form sends nothing until submitted, so its values could not survive a
    page switch; every input is kept (lib/app/state.py) and a change only reruns this page.
    train_view ("Curves" or "Inside", kept), train_inside_layer (the tensor whose histograms Inside shows, kept).
Chart keys: train_loss_chart (title "Loss"), train_step_accuracy_chart, train_accuracy_chart, train_lr_chart;
Inside: train_ratio_chart, train_grad_chart, train_weight_hist_chart, train_grad_hist_chart, train_dead_chart,
train_cpu_chart, train_memory_chart, train_gpu_chart, train_gpu_memory_chart.
Session state read: dataset_root (str), session_id (str). Written: train_run (the run shown).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from lib.app import cache, repairs, sessions
from lib.app import train_tools as tools
from lib.app.cache import run_store
from lib.app.layout import HALF, tiles
from lib.app.numbers import percent_column
from lib.app.state import keep, set_value
from lib.app.text import plain, plain_error
from lib.charts.inside import (
    dead_units_chart,
    grad_norm_chart,
    histogram_chart,
    layer_order,
    machine_chart,
    update_ratio_heatmap,
)
from lib.charts.series import MAX_POINTS
from lib.charts.train import accuracy_chart, loss_chart, lr_chart, step_accuracy_chart
from lib.data.sample import sample_root
from lib.runs.inside import inside_view
from lib.runs.status import Status
from lib.runs.store import StoreError
from lib.runs.sweeps import request_sweep_stop
from lib.runs.view import (
    RunView,
    format_duration,
    run_labels,
    run_view,
    runs_table,
    status_sentence,
    with_parent_history,
)
from lib.settings import runs_dir
from lib.training.config import (
    FINETUNES,
    MODELS,
    NORMALIZATIONS,
    OPTIMIZERS,
    PAGE_FIELDS,
    RESIZES,
    SCHEDULES,
    TrainConfig,
    validation_size,
)
from lib.training.runner import start_run, stop_run
from lib.training.sweep import SWEEPABLE, parse_values, start_sweep

repairs.install()  # first: a deep link on a fresh server runs this page alone (lib/app/repairs.py)

LR_RANGE = (1e-7, 10.0)  # the learning rates Start accepts
STATUS_BOX = {
    Status.RUNNING: st.info,
    Status.COMPLETED: st.success,
    Status.STOPPED: st.info,
    Status.DIVERGED: st.error,
    Status.FAILED: st.error,
    Status.INTERRUPTED: st.warning,
}

st.title("Train")
settings = cache.settings()
if "session_id" not in st.session_state:
    st.session_state.session_id = uuid.uuid4().hex
root = st.session_state.get("dataset_root") or str(sample_root())
try:
    store = run_store(str(runs_dir()))
except StoreError as e:
    st.error(plain_error(e))
    st.stop()
if store.recent_notice():
    st.warning(plain(store.recent_notice()))


FIELDS = PAGE_FIELDS  # TrainConfig fields with page=True
KEY = {f: f"train_{f}" for f in FIELDS}
OPTIONS = {
    "model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "normalization": NORMALIZATIONS,
    "finetune": FINETUNES, "resize": RESIZES,
}  # fmt: skip
VIEWS = ("Curves", "Inside")
SMALL_VALIDATION = 20  # fewer validation images than this: each one moves accuracy by more than 5 %


def form_values(config: dict) -> dict:
    """A run's config as the form's values (0 batches = all; the name is left for the new run)."""
    d = {k: v for k, v in {**TrainConfig().to_dict(), **config}.items() if k in FIELDS}
    return {
        **d, "max_batches": d["max_batches"] or 0, "rotation": int(round(d["rotation"])), "name": "",
        "weights": d["weights"] or "DEFAULT",
    }  # fmt: skip


def hyperparameter_inputs() -> None:
    """The sidebar inputs, kept across page switches (lib/app/state.py), and Start with its refusals."""
    for field, value in form_values({}).items():
        keep(KEY[field], value, options=OPTIONS.get(field))
    with st.sidebar:
        st.subheader("Hyperparameters")
        # Start first, the fields grouped below it: under 15 fields Start sat 2,800 px down the sidebar.
        st.text_input("Run name (optional)", key=KEY["name"])
        st.button("Start", key="train_start", type="primary", on_click=start, width="stretch")
        if st.session_state.get("train_refusal"):
            st.error(st.session_state.pop("train_refusal"))
        with st.expander("Model", expanded=True):
            st.selectbox("Model", MODELS, key=KEY["model"], help="Type to search; `python -m lib models` lists them.")
            model_fields()
            st.number_input("Image size (px)", min_value=8, step=1, key=KEY["image_size"],
                            help=f"At most {settings.max_image_size}.")  # fmt: skip
        with st.expander("Optimization", expanded=True):
            optimization_fields()
        with st.expander("Augmentation"):
            augmentation_fields()
        with st.expander("Data"):
            st.selectbox("Normalization", NORMALIZATIONS, key=KEY["normalization"])
            st.selectbox("Resize", RESIZES, key=KEY["resize"],
                         help="square squashes each image to the image size; weights does what the pretrained "
                         "weights' transforms() do: the shorter side to their resize size (scaled by image size / "
                         "their crop), then the centre crop.")  # fmt: skip
            st.slider("Validation split", 0.05, 0.5, step=0.05, key=KEY["val_split"])
            st.number_input("Seed", 0, 2**31 - 1, step=1, key=KEY["seed"])
        sweep_fields()
        st.button("Find learning rate", key="train_lr_find", on_click=find_lr, width="stretch")
        validation_notes()


def optimization_fields() -> None:
    """How long and how fast: epochs, batches, learning rate, optimizer, schedule."""
    st.number_input("Epochs", min_value=1, step=1, key=KEY["epochs"], help=f"At most {settings.max_epochs}.")
    st.number_input("Batches per epoch (0 = all)", 0, 100_000, step=1, key=KEY["max_batches"],
                    help="A quick dry run: caps the training batches per epoch; validation still sees every image.")  # fmt: skip
    st.number_input("Batch size", 1, 1024, step=1, key=KEY["batch_size"])
    # Typed, not dragged along a list: 3e-4 or 0.0003, any value a run or the finder suggests.
    st.number_input("Learning rate", LR_RANGE[0], LR_RANGE[1], step=1e-4, format="%g", key=KEY["lr"],
                    help="Type a number such as 3e-4.")  # fmt: skip
    st.selectbox("Optimizer", OPTIMIZERS, key=KEY["optimizer"], help="sgd uses momentum 0.9")
    st.number_input("Weight decay", 0.0, 1.0, format="%.5f", key=KEY["weight_decay"])
    st.selectbox("LR schedule", SCHEDULES, key=KEY["schedule"])


def model_fields() -> None:
    """Under Model: its size and input, a model file (local mode), pretrained weights and how much trains."""
    if not settings.deployed:
        keep("train_model_file", "")
        st.text_input("Or your model file", key="train_model_file", placeholder="path/to/file.py:build",
                      help="build(num_classes) -> torch.nn.Module; the run records the file's SHA-256.")  # fmt: skip
    facts = cache.model_facts(st.session_state[KEY["model"]])
    at_hand = "default weights at hand" if facts["cached"] else "default weights not downloaded"
    st.caption(
        f"{facts['params']:,} parameters · {facts['default_size']} px input"
        + (f" · {at_hand}" if facts["weights"] else "")
    )
    if not facts["weights"]:
        return
    st.checkbox("Pretrained weights", key=KEY["pretrained"], on_change=weights_preprocessing, args=(facts,))
    if not st.session_state[KEY["pretrained"]]:
        return
    choices = facts["choices"]
    keep(KEY["weights"], "DEFAULT", options=list(choices))  # another model's weights name: back to DEFAULT
    st.selectbox("Weights", list(choices), key=KEY["weights"], format_func=lambda w: weights_label(w, choices[w]),
                 on_change=weights_preprocessing, args=(facts,),
                 help="torchvision's weights of this model; DEFAULT is its best. Each says whether its file is "
                 "in torch hub's cache ($TORCH_HOME/hub/checkpoints).")  # fmt: skip
    chosen = choices[st.session_state[KEY["weights"]]]
    top1 = f", {chosen['acc']:g} % top-1 on ImageNet" if chosen["acc"] else ""
    st.caption(
        f"{chosen['name']}{top1}. Their preprocessing: shorter side to {chosen['resize']} px, centre "
        f"{chosen['crop']} px crop ({chosen['interpolation']}), their mean/std; Data > Resize and Normalization "
        "override it."
    )
    st.radio("Fine-tune", FINETUNES, key=KEY["finetune"], horizontal=True,
             help="head: only a new head trains, on the frozen backbone's features computed once; full: every layer.")  # fmt: skip
    if st.session_state[KEY["finetune"]] == "full":
        st.number_input("Backbone LR scale", 0.0, 1.0, step=0.05, key=KEY["backbone_lr_scale"])
    if not chosen["cached"]:
        weights_download(facts["name"], chosen)


def weights_label(option: str, choice: dict) -> str:
    """A Weights option, short enough for the sidebar: its name and whether its file is in the cache."""
    return f"{option} · {'cached' if choice['cached'] else 'not cached'}"


def weights_preprocessing(facts: dict) -> None:
    """Ticking Pretrained (or choosing other weights) uses the weights' own input size, resize and mean/std
    (all stay editable); unticking goes back to scratch training's."""
    if st.session_state[KEY["pretrained"]]:
        weights = st.session_state.get(KEY["weights"])
        chosen = facts["choices"].get(weights, facts["choices"]["DEFAULT"])
        set_value(KEY["image_size"], chosen["crop"])
        set_value(KEY["normalization"], "weights")
        set_value(KEY["resize"], "weights")
    else:
        set_value(KEY["finetune"], "full")
        for field, scratch in (("normalization", "dataset"), ("resize", "square")):
            if st.session_state[KEY[field]] == "weights":
                set_value(KEY[field], scratch)


def weights_download(model: str, chosen: dict) -> None:
    """Missing weights: deployed mode says who seeds them; local mode offers the download, with progress."""
    if settings.deployed:
        st.info(
            "These weights are not on this server, and it never downloads: its operator pre-seeds torch hub's cache."
        )
        return
    job = cache.weights_job(model, chosen["name"])
    if job is None:
        size = chosen["file_mb"]
        label = f"Download weights ({size:g} MB)" if size else "Download weights"
        st.button(label, key="train_download_weights", on_click=cache.weights_job, args=(model, chosen["name"]),
                  kwargs={"start": True})  # fmt: skip
        return
    download_progress(model, chosen["name"])


@st.fragment(run_every=0.5)
def download_progress(model: str, weights: str) -> None:
    job = cache.weights_job(model, weights)
    if job.error:
        st.error(plain_error(job.error))
    elif not job.done:
        st.progress(job.fraction, text="Downloading weights into torch hub's cache…")
    else:
        st.success("Weights downloaded.")


def augmentation_fields() -> None:
    """The Channels page's augmentation controls, under the same labels: what is previewed there is trained here."""
    st.caption("Training batches only; preview them on the Channels page.")
    st.checkbox("Random crop (reflect padding)", key=KEY["random_crop"])
    st.checkbox("Horizontal flip", key=KEY["hflip"])
    st.slider("Rotation (degrees)", 0, 180, key=KEY["rotation"])
    st.slider("Colour jitter", 0.0, 1.0, step=0.05, key=KEY["color_jitter"])


def sweep_fields() -> None:
    """One or two hyperparameters to vary, their comma-separated values, and Start sweep."""
    st.caption("Sweep (optional): one run per combination, trained one after another")
    for i in (1, 2):  # one under the other: the sidebar is too narrow for both side by side
        keep(f"train_sweep_param{i}", "none", options=("none", *SWEEPABLE))
        keep(f"train_sweep_values{i}", "")
        st.selectbox(f"Vary #{i}", ("none", *SWEEPABLE), key=f"train_sweep_param{i}")
        st.text_input(f"Values #{i}", placeholder="e.g. 1e-3, 3e-3", key=f"train_sweep_values{i}")
    st.button("Start sweep", key="train_sweep_start", on_click=begin_sweep, width="stretch")


def input_config() -> TrainConfig:
    """The inputs as a TrainConfig, its weights resolved as the run records them (raises ValueError with a sentence)."""
    from lib.training.models import with_weights_preprocessing

    values = {f: st.session_state[KEY[f]] for f in FIELDS}
    values.update(max_batches=values["max_batches"] or None, rotation=float(values["rotation"]))
    if not values["pretrained"]:
        values["weights"] = ""
    model_file = "" if settings.deployed else st.session_state.get("train_model_file", "").strip()
    if model_file:
        values["model"] = model_file
    if model_file or not cache.model_facts(values["model"])["weights"]:  # scratch: no weights to start from
        values.update(pretrained=False, weights="", finetune="full")
    return with_weights_preprocessing(TrainConfig(**values))


def visitor() -> str:
    """Who is asking, across their tabs (lib/app/sessions.visitor_id)."""
    return sessions.visitor_id(st.session_state.session_id, st.context.ip_address, st.context.headers.get("User-Agent"))


def begin_sweep() -> None:
    """Start sweep's callback: queue the grid and start its driver, or say why not (under Start)."""
    try:
        axes = [
            [name, parse_values(name, st.session_state[f"train_sweep_values{i}"])]
            for i in (1, 2)
            if (name := st.session_state[f"train_sweep_param{i}"]) != "none"
        ]
        if not axes:
            raise ValueError("Choose a hyperparameter to vary under Sweep and give its values, then Start sweep.")
        owner = st.session_state.session_id
        sessions.check_room_for_runs(owner, settings, store)
        st.session_state.train_sweep = start_sweep(
            input_config(), axes, root, store, owner, settings=settings, visitor=visitor()
        )
    except (ValueError, StoreError) as e:
        st.session_state.train_refusal = plain_error(e)


def find_lr() -> None:
    """Find learning rate's callback: the range test with the inputs, in its own process."""
    try:
        tools.start_lr_finder(input_config(), root, store, st.session_state.session_id, settings)
    except ValueError as e:
        st.session_state.train_refusal = plain_error(e)


def start() -> None:
    """Start's callback: a run from the inputs, or the reason it cannot start (shown under Start)."""
    try:
        config = input_config()
        sessions.check_room_for_runs(st.session_state.session_id, settings, store)
        run_id = start_run(config, root, store, st.session_state.session_id, settings=settings, visitor=visitor())
    except (ValueError, StoreError) as e:
        st.session_state.train_refusal = plain_error(e)
        return
    set_value("train_run", run_id)
    set_value(KEY["name"], "")  # the next run gets its own name


def validation_notes() -> None:
    """Say under Start when the validation set will be too small to trust."""
    try:
        counts = list(cache.current_index(root).class_counts().values())
    except ValueError:
        return
    n = validation_size(counts, st.session_state[KEY["val_split"]])
    if 0 < n < SMALL_VALIDATION:
        st.warning(
            f"Validation will use only {n} images, so each moves the accuracy by {100 / n:.0f} points; "
            "raise the validation split or use more images."
        )


def use_settings(config: dict) -> None:
    """ "Use this run's settings": fill the inputs from a run's config (callback: before the widgets)."""
    for field, value in form_values(config).items():
        set_value(KEY[field], value)


def draw(view: RunView) -> None:
    """Status, progress, and the charts of one run."""
    record, p = view.record, view.progress
    STATUS_BOX.get(record.status, st.info)(plain(status_sentence(record)))
    if p.total_steps:
        st.progress(p.fraction, text=f"Epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.steps_per_epoch}")
    with st.container(horizontal=True, gap="large"):  # wraps in a narrow window: four columns clipped "100/100"
        st.metric("Epoch", f"{p.epoch}/{p.epochs}" if p.epochs else f"{p.epoch}", width="content")
        st.metric("Batch", f"{p.batch}/{p.steps_per_epoch or '?'}", width="content")
        st.metric("Samples/s", f"{p.samples_per_sec:,.0f}" if p.samples_per_sec else "-", width="content")
        st.metric("ETA", format_duration(p.eta_s), width="content")
    if view.steps.empty:
        st.caption("No batch has finished yet.")
        return
    n = len(view.steps)
    st.caption(
        f"Steps recorded: {n:,}"
        + (
            f"; drawn as at most {MAX_POINTS:,} points per line, each bucket's "
            "minimum and maximum kept, so no spike is hidden"
            if n > MAX_POINTS
            else ""
        )
    )
    steps, epochs, first_step = with_parent_history(store, view)  # a continued run: its parent's curve first
    tools.parent_note(record, store, first_step)
    keep("train_smoothing", 0.6)
    smoothing = st.slider("Smoothing", 0.0, 0.99, step=0.01, key="train_smoothing")
    st.altair_chart(
        loss_chart(steps, epochs, smoothing=smoothing, steps_per_epoch=p.steps_per_epoch),
        width="stretch",
        key="train_loss_chart",
    )
    metrics = store.metrics(record.id)
    per_step = metrics[metrics["name"] == "train_accuracy"]
    per_epoch = metrics[metrics["name"] == "epoch/train_accuracy"].rename(columns={"value": "train_accuracy"})
    if not per_step.empty:
        st.altair_chart(step_accuracy_chart(per_step), width="stretch", key="train_step_accuracy_chart")
    left, right = tiles(2, HALF)  # side by side at 1400 px; at 800 px one above the other, legends whole
    if not epochs.empty:
        left.altair_chart(accuracy_chart(epochs, per_epoch), width="stretch", key="train_accuracy_chart")
    right.altair_chart(lr_chart(steps), width="stretch", key="train_lr_chart")


def draw_inside(run_id: str) -> None:
    """The Inside view: the rules that trip, then update ratios, gradients, histograms, dead units, the machine."""
    inside = inside_view(store, run_id)
    for sentence in inside.sentences:
        st.warning(plain(sentence))
    if inside.norms.empty:
        st.info("This run recorded no layers yet (runs trained before layers were recorded, or logged ones "
                "without run.watch(model), have none).")  # fmt: skip
    else:
        if not inside.sentences:
            st.success("No rule trips: update ratios between 1e-5 and 1e-1, no vanished gradient, few dead units.")
        st.altair_chart(update_ratio_heatmap(inside.norms), width="stretch", key="train_ratio_chart")
        st.altair_chart(grad_norm_chart(inside.norms), width="stretch", key="train_grad_chart")
    if not inside.histograms.empty:
        names = layer_order(inside.histograms)
        keep("train_inside_layer", names[0], options=names)
        layer = st.selectbox("Layer (histograms)", names, key="train_inside_layer")
        # One under the other, full width: side by side, each got 100 px of plot in an 800 px window.
        for which, key in (("weight", "train_weight_hist_chart"), ("grad", "train_grad_hist_chart")):
            st.altair_chart(histogram_chart(inside.histograms, layer, which), width="stretch", key=key)
    if not inside.dead_units.empty:
        st.altair_chart(dead_units_chart(inside.dead_units), width="stretch", key="train_dead_chart")
    draw_machine(inside.machine)


def draw_machine(machine) -> None:
    """The trainer process's CPU share and memory (and the GPU's, on CUDA), sampled every few seconds."""
    if machine.empty:
        st.caption("The machine: no sample yet (the trainer samples its load every few seconds).")
        return
    columns = ["cpu_percent", "rss_mb"] + [c for c in ("gpu_percent", "gpu_mem_mb") if machine[c].notna().any()]
    keys = {"cpu_percent": "cpu", "rss_mb": "memory", "gpu_percent": "gpu", "gpu_mem_mb": "gpu_memory"}
    for column, place in zip(columns, st.columns(2) * 2, strict=False):
        place.altair_chart(machine_chart(machine, column), width="stretch", key=f"train_{keys[column]}_chart")


def show(run_id: str, running: bool, mode: str) -> None:
    """Draw run_id; while it trains, redraw from the store every second without rerunning the page."""

    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        sessions.touch(st.session_state.session_id)  # a tab watching a run is not idle
        try:
            view = run_view(store, run_id)
        except StoreError as e:
            st.error(plain_error(e))
            return
        if view is None:
            st.info("That run is no longer in the store.")
            return
        if view.record.status == Status.RUNNING and st.button("Stop", key="train_stop"):
            if view.record.sweep:  # Stop on a sweep's run stops the whole sweep
                request_sweep_stop(store, view.record.sweep)
            else:
                stop_run(run_id, store)
            st.toast("Stopping after the current batch.")
        if mode == "Inside":
            STATUS_BOX.get(view.record.status, st.info)(plain(status_sentence(view.record)))
            draw_inside(run_id)
        else:
            draw(view)
        if running and view.record.status != Status.RUNNING:
            st.rerun(scope="app")  # the run ended: refresh the runs list and stop polling

    live()


hyperparameter_inputs()
tools.lr_finder_panel()
if "train_sweep" in st.session_state:
    tools.sweep_panel(st.session_state.train_sweep, store)
try:
    runs = store.list_runs(st.session_state.session_id if settings.deployed else None)
except StoreError as e:
    st.error(plain_error(e))
    st.stop()
if not runs:
    st.info("No runs yet: set hyperparameters in the sidebar and press Start.")
    st.stop()
labels = run_labels(runs)
tools.take_followed()
keep("train_run", runs[0].id, options=list(labels), param="run")
pick, use = st.columns([3, 2], vertical_alignment="bottom")  # the button label whole at 800 px
run_id = pick.selectbox("Run", list(labels), format_func=labels.get, key="train_run")
record = next(r for r in runs if r.id == run_id)
use.button(
    "Use this run's settings",
    key="train_use_settings",
    on_click=use_settings,
    args=(record.config,),
    help="Fill the hyperparameters in the sidebar from this run.",
    width="stretch",
)
with st.expander(f"All runs ({len(runs)})"):
    st.dataframe(
        runs_table(runs),
        hide_index=True,
        column_config={
            "val accuracy": percent_column("val accuracy"),
            "val loss": st.column_config.NumberColumn(format="%.4f"),
            "lr": st.column_config.NumberColumn(format="%g"),
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
with st.expander("Configuration"):
    # A deployment shows the dataset's folder name only, never where the server keeps it.
    dataset = Path(record.root).name if settings.deployed else record.root
    st.json({"run_id": record.id, "dataset": dataset, "parent": record.parent, **record.config})
tools.train_more(record, store, st.session_state.session_id, settings)
keep("train_view", VIEWS[0], options=VIEWS)
mode = st.radio("View", VIEWS, key="train_view", horizontal=True, help="Inside: what the layers do while it trains")
show(run_id, record.status == Status.RUNNING, mode)

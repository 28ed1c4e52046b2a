"""Log any training loop into the run store, so the app shows it like a run it trained itself.

    from lib.runs.logger import start_run

    with start_run("my-run", config={"lr": 0.1}) as run:
        run.log(step=step, train_loss=loss.item(), lr=lr)           # a step's metrics
        run.log(step=step, epoch=epoch, val_loss=vl, val_accuracy=va)  # an epoch's validation
        if run.should_stop:                                          # Stop pressed on the Train page
            break

A call with `val_loss` or `val_accuracy` writes an epoch row (its `epoch`, or the next one); any other
call writes a step row (its `step`, or the next one). A step row's epoch, when not given, is the
epoch in progress: one more than the epochs logged so far. `train_loss`, `lr` and `samples_per_sec`
are the store's own columns; any other keyword is an extra metric, stored by name. Values are kept as
given (float64); two calls for the same step fill one row.

Rows are buffered and written in one transaction every `flush_s` seconds by a background thread (which
also beats the heartbeat and reads the stop flag), every `flush_rows` rows, and when the block ends:
`log` only appends to a list, so it costs microseconds. The run's pid and host are recorded as for the
app's trainers, so a killed script's run reads `interrupted` when the app next looks.

`SummaryWriter` is the same logger behind `torch.utils.tensorboard`'s methods (see lib/runs/tags.py
for how tags become columns).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from lib.runs.machine import SAMPLE_S, Sampler
from lib.runs.status import Status
from lib.runs.store import RunStore, StoreError
from lib.runs.tags import EPOCH_ONLY, column_for

STEP_FIELDS = ("train_loss", "lr", "samples_per_sec")
EPOCH_FIELDS = ("train_loss", "val_loss", "val_accuracy", "lr", "samples_per_sec")
STOPPED_MESSAGE = "Stopped by KeyboardInterrupt; the metrics so far are kept."


class Run:
    """A run being logged: `log`, `save_checkpoint`, `should_stop`. Safe to call from several threads."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        config: dict,
        *,
        flush_s: float = 0.5,
        flush_rows: int = 1000,
        machine_s: float = SAMPLE_S,
    ):
        self.store, self.id, self.config = store, run_id, config
        self.flush_s, self.flush_rows = flush_s, flush_rows
        self._lock = threading.Lock()  # guards the buffers and the counters
        self._write = threading.Lock()  # one flush at a time, so rows reach the store in order
        self._steps: dict[int, dict] = {}
        self._epochs: dict[int, dict] = {}
        self._metrics: list[tuple] = []
        self._step, self._epoch = 0, 0  # the latest step logged; epochs logged so far
        self._stop, self._error = False, None
        self.checkpoint: str | None = None
        self._recorder = None  # set by watch()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"torchscope-log-{run_id}", daemon=True)
        self._thread.start()
        self._sampler = Sampler(lambda rows: self._write_layers("machine", rows), lambda: self._step, machine_s).start()

    def log(self, step: int | None = None, epoch: int | None = None, **metrics: float) -> None:
        """Record metrics at a step (see the module docstring for step and epoch rows).

        Raises:
            ValueError: for a value that is not a number.
            StoreError: when the store could not be written since the last call (one sentence).
        """
        if self._error is not None:
            raise self._error
        values = {name: _number(name, v) for name, v in metrics.items()}
        with self._lock:
            validation = any(k in EPOCH_ONLY for k in values)
            self._step = int(step) if step is not None else self._step + (not validation)
            if validation:
                self._epoch = int(epoch) if epoch is not None else self._epoch + 1
                row, at, fields = self._epochs.setdefault(self._epoch, {}), self._epoch, EPOCH_FIELDS
            else:
                at, fields = self._step, STEP_FIELDS
                row = self._steps.setdefault(at, {"epoch": int(epoch) if epoch is not None else self._epoch + 1})
            for name, value in values.items():
                if name in fields:
                    row[name] = value
                else:
                    self._metrics.append((self.id, self._step, at if fields is EPOCH_FIELDS else row["epoch"],
                                          name, value))  # fmt: skip
            due = len(self._steps) + len(self._metrics) >= self.flush_rows
        if validation and self._recorder is not None:
            self._recorder.epoch_end(self._epoch)
        if due:
            self.flush()

    def watch(self, model, optimizer, *, every: int = 10, probe=None) -> None:
        """Record model's layers as the app's engine does (lib/runs/recorder.py): per-tensor weight and
        gradient norms and update ratios at optimizer step 1, every `every` steps and the last one, and,
        each time an epoch's validation is logged, histograms (and dead ReLU units on `probe`, a prepared
        input batch, when given). Steps count optimizer.step() calls; hooks on the optimizer do the work.
        """
        from lib.runs.recorder import Recorder

        updated = [p for group in optimizer.param_groups for p in group["params"]]
        recorder = Recorder(model, self._write_layers, every=every, probe=probe, updated=updated)
        steps = [0]

        def after(*_) -> None:
            steps[0] += 1
            recorder.after_update(steps[0], self._epoch + 1)

        optimizer.register_step_pre_hook(lambda *_: recorder.before_update())
        optimizer.register_step_post_hook(after)
        self._recorder = recorder

    def _write_layers(self, kind: str, rows: list[tuple]) -> None:
        from lib.runs.inside import write_rows

        write_rows(self.store, self.id, kind, rows)

    @property
    def should_stop(self) -> bool:
        """Whether Stop was pressed for this run (read from the store at each flush, at most flush_s old)."""
        return self._stop

    def flush(self) -> None:
        """Write the buffered rows now (one transaction), beat the heartbeat and read the stop flag."""
        with self._write:
            with self._lock:
                steps, epochs, metrics = self._steps, self._epochs, self._metrics
                self._steps, self._epochs, self._metrics = {}, {}, []
            rows = [(self.id, s, r["epoch"], *(r.get(f) for f in STEP_FIELDS)) for s, r in steps.items()]
            erows = [(self.id, e, *(r.get(f) for f in EPOCH_FIELDS)) for e, r in epochs.items()]
            self._stop = self.store.write_logged(self.id, rows, erows, metrics) or self._stop

    def save_checkpoint(
        self, model, classes: list[str] | None = None, which: str = "last", *, mean=None, std=None,
        root: str | Path = "", val_samples: list[tuple[str, int]] | None = None,
    ) -> str:  # fmt: skip
        """Save model's weights with the run's config, so Evaluate and Explain can open the run.

        They can when the config names a model Torchscope builds (`model` and `image_size`, as in
        TrainConfig) and val_samples lists the validation images as (path, class index), relative to
        root or absolute; mean and std are the normalization the model expects (3 floats each). root
        (the dataset folder) defaults to the folder the val_samples share.
        Returns the checkpoint's path.
        """
        val = list(val_samples or [])
        root, paths = _relative(val, str(root))
        state = {
            "format": 1,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "epoch": self._epoch,
            "step": self._step,
            "partial": False,
            "config": self.config,
            "classes": [str(c) for c in classes or []],
            "mean": [float(m) for m in mean] if mean is not None else None,
            "std": [float(s) for s in std] if std is not None else None,
            "root": root,
            "val_paths": paths,
            "val_targets": [int(t) for _, t in val],
            "metrics": {},
        }
        path = self.store.files.save_checkpoint(self.id, state, which)
        # The run's dataset folder: where Evaluate and Explain find the validation images. Without any,
        # the working directory, so they say what the checkpoint lacks instead of asking for a dataset.
        self.store.update_run(self.id, root=root or os.getcwd())
        if which == "last":
            self.checkpoint = path
        return path

    def end(self, status: str, message: str = "") -> None:
        """Stop the background writer, write what is buffered, and set the final status."""
        self._done.set()
        self._thread.join()
        self._sampler.stop()
        try:
            if self._recorder is not None:
                self._recorder.finish()
            self.flush()
        finally:
            self.store.finish(self.id, status, message, checkpoint=self.checkpoint)

    def _beat(self) -> None:
        """Every flush_s: write what is buffered, beat the heartbeat, read the stop flag."""
        while not self._done.wait(self.flush_s):
            try:
                self.flush()
            except StoreError as e:  # the next log() raises it in the caller's thread
                self._error = e
                return


@contextmanager
def start_run(
    name: str,
    config: dict | None = None,
    runs_dir: str | Path | None = None,
    *,
    flush_s: float = 0.5,
    machine_s: float = SAMPLE_S,
) -> Iterator[Run]:
    """A run in the store for the `with` block; it ends `completed` (`stopped` when Stop was pressed and
    the loop broke off), `failed` with the exception's line, or `stopped` on KeyboardInterrupt.

    Args:
        name: the run's name in the app.
        config: the settings to show and compare (JSON; other values are stored as their str()).
        runs_dir: the run store folder; None is the app's default ($TORCHSCOPE_RUNS_DIR).
        flush_s: the longest a logged value waits before it reaches the store.
        machine_s: seconds between samples of the process's CPU share and memory (the Train page's Inside view).
    """
    store = RunStore(runs_dir)
    config = json.loads(json.dumps(dict(config or {}), default=str))
    run = Run(store, store.create_run(config, name=name, pid=os.getpid()), config, flush_s=flush_s, machine_s=machine_s)
    try:
        yield run
    except KeyboardInterrupt:
        run.end(Status.STOPPED, STOPPED_MESSAGE)
        raise
    except BaseException as e:
        run.end(Status.FAILED, one_line(e))
        raise
    run.end(Status.STOPPED if run.should_stop else Status.COMPLETED)


def _relative(val: list[tuple[str, int]], root: str) -> tuple[str, list[str]]:
    """(root, the paths relative to it in POSIX form): root as given, else the folder all the paths share."""
    paths = [os.path.abspath(os.path.join(root, str(p))) for p, _ in val]
    if root:
        root = os.path.abspath(root)
    elif paths:
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
    return root, [PurePosixPath(*Path(os.path.relpath(p, root)).parts).as_posix() for p in paths]


def one_line(error: BaseException) -> str:
    """The exception as one line: `Type: first line of its message`."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _number(name: str, value) -> float:
    """value as a float (a Python number, numpy scalar or one-element tensor); NaN is kept (stored as NULL)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Metric {name!r} must be a number, not {type(value).__name__}; log float(value).") from None


class SummaryWriter:
    """`torch.utils.tensorboard.SummaryWriter`'s scalar methods over a logged run: switch with one import.

    Tags become the store's columns by lib/runs/tags.py's table; validation tags make epoch rows (one
    epoch per distinct global_step they are logged at); every other tag is an extra metric.
    """

    def __init__(self, log_dir: str | None = None, *, name: str | None = None, config: dict | None = None,
                 runs_dir: str | Path | None = None, flush_s: float = 0.5):  # fmt: skip
        self._cm = start_run(name or Path(log_dir or "").name or "tensorboard", config, runs_dir, flush_s=flush_s)
        self.run = self._cm.__enter__()
        self._val_steps: list[int] = []  # the global steps that carried validation values, in order
        self._closed = False

    def add_scalar(self, tag: str, scalar_value, global_step: int | None = None, walltime=None, **_) -> None:
        """Log one value under tag at global_step (the last step when None)."""
        column = column_for(tag)
        step = self.run._step if global_step is None else int(global_step)
        if column in EPOCH_ONLY:
            if not self._val_steps or self._val_steps[-1] != step:
                self._val_steps.append(step)
            self.run.log(step=step, epoch=len(self._val_steps), **{column: scalar_value})
        else:
            self.run.log(step=step, epoch=len(self._val_steps) + 1, **{column or tag: scalar_value})

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step: int | None = None, walltime=None):
        """Log each value under `main_tag/key`, as TensorBoard names them."""
        for key, value in tag_scalar_dict.items():
            self.add_scalar(f"{main_tag}/{key}", value, global_step)

    def add_hparams(self, hparam_dict: dict, metric_dict: dict, **_) -> None:
        """Add hparams to the run's config (shown and compared on Runs) and log metric_dict's values."""
        config = {**self.run.config, **json.loads(json.dumps(hparam_dict, default=str))}
        self.run.config = config
        self.run.store.update_run(self.run.id, config=config)
        for tag, value in metric_dict.items():
            self.add_scalar(tag, value)

    def flush(self) -> None:
        self.run.flush()

    def close(self) -> None:
        """End the run `completed` (or `stopped`, when Stop was pressed)."""
        if not self._closed:
            self._closed = True
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if not self._closed:
            self._closed = True
            self._cm.__exit__(kind, error, tb)

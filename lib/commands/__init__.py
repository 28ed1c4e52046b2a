"""Sub-commands of `python -m lib`, as a light table: a command's name, help and options function live here
(lib/commands/options.py); its module is imported only when it runs, so `--help`, `stats` and `inspect`
never load torch or pandas."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from lib.commands import options


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: Callable  # adds the command's arguments to its parser
    run: str  # "module:function" in lib/commands/, imported when the command runs
    epilog: str | None = None

    def load(self) -> Callable:
        """The function that runs the command (args -> exit code), importing its module now."""
        module, function = self.run.split(":")
        return getattr(importlib.import_module(f"lib.commands.{module}"), function)


COMMANDS = (
    Command("inspect", "index and fully check a dataset (folder or .zip)", options.inspect, "inspect:run"),
    Command("stats", "exact per-channel mean, std, min and max of a dataset", options.stats, "stats:run"),
    Command(
        "train",
        "train a model on a dataset; the run lands in the run store",
        options.train,
        "train:run",
        epilog="exit codes: 0 completed, 1 failed, 2 bad input, 3 diverged, 4 stopped; under torchrun 0 unless "
        "the run failed (its status is in the store and the --json line)",
    ),
    Command(
        "models", "the models a run can train, with parameters, input size and weights", options.models, "models:run"
    ),  # fmt: skip
    Command("runs", "list training runs in the run store", options.runs, "runs:run"),
    Command(
        "layers",
        "what a run's layers did: weight and gradient norms, update ratios, histograms, dead units",
        options.layers,
        "layers:run",
    ),
    Command(
        "export",
        "write runs' metrics as one long CSV, run bundles or TensorBoard event files",
        options.export,
        "transfer:export",
    ),
    Command(
        "import",
        "add the runs of a bundle (.zip from `export`) to the run store",
        options.import_,
        "transfer:import_",
    ),
    Command(
        "lr-find",
        "suggest a learning rate with a short exponential sweep; writes no run",
        options.lr_find,
        "lr_find:run",
        epilog="--lr, --schedule, --epochs and --max-batches are ignored: the sweep sets the learning rate",
    ),
    Command(
        "sweep",
        "train a grid over one or two hyperparameters, one run after another, as one sweep",
        options.sweep,
        "sweep:run",
        epilog="exit codes: 0 completed, 2 bad input, 4 stopped",
    ),
    Command("evaluate", "metrics of a run's last checkpoint on its validation split", options.evaluate, "evaluate:run"),
    Command("explain", "attribution maps of a run's model for some images (.npy)", options.explain, "explain:run"),
    Command("health", "find duplicates, likely wrong labels and outliers in a dataset", options.health, "health:run"),
    Command(
        "import-tb",
        "add TensorBoard runs (folders of event files) to the run store",
        options.import_tb,
        "import_tb:run",
    ),
)

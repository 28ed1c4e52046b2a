"""Every command's options, one function per command: what `--help` and parsing need, nothing heavier.

This module imports no torch, pandas or other heavy package (tests/test_cli_imports.py): lib/__main__.py
builds the whole parser from it and imports a command's own module only when that command runs.
"""

from __future__ import annotations

from argparse import ArgumentParser

from lib.health import MAX_THRESHOLD, NEAR_THRESHOLD
from lib.health import MODELS as HEALTH_MODELS
from lib.training.config import DEFAULT_CACHE_MB, add_config_options
from lib.training.sweep import SWEEPABLE

EXPLAIN_METHODS = ("gradcam", "ig", "saliency", "occlusion")  # lib.evaluation.attributions.METHODS, without captum
LR_FIND_DEFAULTS = dict(start_lr=1e-7, end_lr=10.0, num_batches=100)  # LRFinderConfig's, without torch


def runs_dir(p: ArgumentParser) -> None:
    p.add_argument(
        "--runs-dir",
        default=None,
        help="the run store folder (default: $TORCHSCOPE_RUNS_DIR or ~/.cache/torchscope/runs)",
    )


def execution(p: ArgumentParser, threads: str) -> None:
    """How a training command uses this machine: --cache-mb and --threads."""
    p.add_argument(
        "--cache-mb",
        type=int,
        default=DEFAULT_CACHE_MB,
        help=f"decode once and keep images in memory up to this size, else stream (default: {DEFAULT_CACHE_MB})",
    )
    p.add_argument("--threads", type=int, default=None, help=threads)


def watch(p: ArgumentParser) -> None:
    """What ends a run from outside (lib.training.watch): shared by `train`, `sweep` (there, per run) and
    `lr-find` (which then exits, keeping nothing)."""
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop a run after this many minutes of training, as `stopped` with the reason (default: no limit)",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="end the run as `interrupted` when process PID, which started this command, exits (the app passes "
        "its own; default: none)",
    )


def check_args(args) -> None:
    """Refuse options no run could use, before anything starts.

    Raises:
        ValueError: one sentence per bad option.
    """
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}; leave it out to use every core.")
    if args.cache_mb < 0:
        raise ValueError(f"--cache-mb must be zero or more, got {args.cache_mb}; 0 streams every batch from disk.")
    parent_pid, max_minutes = getattr(args, "parent_pid", None), getattr(args, "max_minutes", None)
    if parent_pid is not None and parent_pid < 1:
        raise ValueError(f"--parent-pid must be a process id, got {parent_pid}.")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"--max-minutes must be a positive number, got {max_minutes}.")


def inspect(p: ArgumentParser) -> None:
    p.add_argument("source", help="an ImageFolder folder, or a .zip of one")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a text summary)")


def stats(p: ArgumentParser) -> None:
    p.add_argument("source", help="an ImageFolder folder, a .zip of one, or 'sample'")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize each image to SIZE x SIZE first, as training does (default: native size)",
    )
    p.add_argument("--workers", type=int, default=0, help="processes to decode with (default: 0, every core)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a text summary)")


def train(p: ArgumentParser) -> None:
    p.add_argument(
        "source", nargs="?", default=None, help="an ImageFolder folder, a .zip of one, or `sample` (not with --resume)"
    )
    add_config_options(p)
    runs_dir(p)
    execution(
        p,
        threads="torch CPU threads and decode workers (default: threads for the cores the 1-minute load average "
        "leaves free, at least 1; decode workers for every core)",
    )
    p.add_argument(
        "--run-id",
        default=None,
        help="train a run the app already created in the store, with its stored config (default: a new run)",
    )
    watch(p)
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        default=None,
        help="continue RUN_ID from its last checkpoint for --epochs more, as a new run linked to it, on the "
        "parent's dataset with its recipe; the other training options are ignored (default: a new run)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line (default: text)")


def models(p: ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON list of {name, params, default_size, weights, cached} (default: a text table)",
    )


def runs(p: ArgumentParser) -> None:
    runs_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON array of runs (default: a text table)")


def layers(p: ArgumentParser) -> None:
    p.add_argument("run_id", help="a run id, as `python -m lib runs` lists them")
    runs_dir(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: steps, per-tensor norms and update ratios, histograms, dead units "
        "(default: a text table of the last record and the rules that trip)",
    )


def export(p: ArgumentParser) -> None:
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="the runs to export (see `python -m lib runs`)")
    p.add_argument(
        "--out",
        required=True,
        help="FILE.csv for every metric at full resolution, FILE.zip for bundles, DIR for tensorboard",
    )
    p.add_argument(
        "--format",
        choices=("csv", "zip", "tensorboard"),
        default=None,
        help="csv, zip (bundles) or tensorboard (event files in DIR/<run name>); default: from --out's suffix",
    )
    runs_dir(p)


def import_(p: ArgumentParser) -> None:
    p.add_argument("bundle", help="a .zip written by `python -m lib export ... --out FILE.zip` or the Runs page")
    runs_dir(p)
    p.add_argument("--rename", action="store_true", help="give a run whose id is taken a new id (default: refuse)")


def lr_find(p: ArgumentParser) -> None:
    p.add_argument("source", help="an ImageFolder folder, a .zip of one, or `sample`")
    add_config_options(p, exclude=("name",))
    p.add_argument("--start-lr", type=float, default=LR_FIND_DEFAULTS["start_lr"], help="first lr (default: 1e-07)")
    p.add_argument("--end-lr", type=float, default=LR_FIND_DEFAULTS["end_lr"], help="last lr (default: 10)")
    p.add_argument(
        "--num-batches", type=int, default=LR_FIND_DEFAULTS["num_batches"], help="batches in the sweep (default: 100)"
    )
    execution(p, threads="torch CPU threads (default: every core)")
    p.add_argument(
        "--config",
        default=None,
        help="a TrainConfig as JSON, as the app passes it; replaces the options above (default: none)",
    )
    watch(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line (default: text)")


def sweep(p: ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=None, help="an ImageFolder folder, a .zip of one, or `sample`")
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help=f"a hyperparameter and its values, once or twice; NAME one of {', '.join(SWEEPABLE)} "
        "(dashes or underscores) (default: none, required without --sweep-id)",
    )
    add_config_options(p, exclude=("name",))
    runs_dir(p)
    execution(p, threads="torch CPU threads (default: every core)")
    watch(p)
    p.add_argument("--sweep-id", default=None, help="drive a sweep the app created in the store (default: a new one)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line (default: text)")


def evaluate(p: ArgumentParser) -> None:
    p.add_argument("run_id", help="a run id, as `python -m lib runs` lists them")
    runs_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a text report)")
    p.add_argument(
        "--predictions-csv",
        default=None,
        metavar="FILE",
        help="also write one row per image: path, true, pred, confidence, loss (default: not written)",
    )


def explain(p: ArgumentParser) -> None:
    p.add_argument("run_id", help="a run id from `python -m lib runs`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size: resized as training did)")
    p.add_argument(
        "--method",
        default=None,
        help=f"one of {', '.join(EXPLAIN_METHODS)} (default: gradcam, or ig for a model without a conv layer)",
    )
    p.add_argument("--target", default=None, help="class name or index to explain (default: each image's predicted)")
    p.add_argument("--out", default=".", help="folder for the <image stem>.npy maps (default: the current folder)")
    p.add_argument("--which", choices=("last", "best"), default="last", help="which checkpoint (default: last)")
    runs_dir(p)
    p.add_argument("--device", default="auto", help="auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a line per image)")


def health(p: ArgumentParser) -> None:
    p.add_argument("source", help="an ImageFolder folder, a .zip of one, or 'sample'")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a text summary)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for the label check (default: 5)")
    p.add_argument(
        "--model",
        choices=HEALTH_MODELS,
        default="auto",
        help="the label check's quick model: probe (a linear probe on a pretrained backbone whose weights are in "
        "torch hub's cache), cnn (the small cnn trained per fold), linear or knn (on the pixels); auto picks probe "
        "when weights are at hand, else cnn (default: auto)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=0,
        help="side images are resized to for features, 4-128 (default: 0, the model's own: 64 for probe, else 16)",
    )
    p.add_argument(
        "--threshold",
        type=int,
        default=NEAR_THRESHOLD,
        help=f"near duplicates: perceptual hashes at most this many bits apart, 0-{MAX_THRESHOLD} (default: {NEAR_THRESHOLD})",
    )
    p.add_argument(
        "--run", dest="run_id", default=None, help="also list duplicates across this run's split, leaks (default: none)"
    )
    runs_dir(p)


def import_tb(p: ArgumentParser) -> None:
    p.add_argument("logdir", metavar="LOGDIR", help="the folder TensorBoard reads: one run per folder of event files")
    runs_dir(p)
    p.add_argument(
        "--rename", action="store_true", help="import a folder imported before under a new id (default: refuse)"
    )
    p.add_argument("--json", action="store_true", help='print {"runs": [{"name", "run_id"}]} (default: a line per run)')

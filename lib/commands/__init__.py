"""Sub-commands of `python -m lib`: each module has `register(subparsers)` that sets `func=run`."""

COMMANDS = (
    "inspect",
    "stats",
    "train",
    "runs",
    "transfer",
    "lr-find",
    "sweep",
    "evaluate",
    "explain",
    "health",
    "import-tb",
)

"""The headless command line: `python -m lib COMMAND ...` (or `torchscope COMMAND ...`) over the same functions
as the app."""

from __future__ import annotations

import argparse
import sys

from lib.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    # One name whichever way it starts (`torchscope` is the same command): help and errors read alike.
    parser = argparse.ArgumentParser(prog="python -m lib", description="Torchscope, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.options(sub.add_parser(command.name, help=command.help, epilog=command.epilog))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (the `torchscope` script exits with it)."""
    args = build_parser().parse_args(argv)
    from lib.runs.store import StoreError

    try:
        _apply_image_limits()
        return next(c for c in COMMANDS if c.name == args.command).load()(args)
    except StoreError as e:
        # The run store failed after the command started: one line, exit 1 (not bad input).
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        # A user's mistake or a bad source: one line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _apply_image_limits() -> None:
    """Per-image pixel and frame limits from TORCHSCOPE_MAX_IMAGE_PIXELS/_FRAMES (the app passes its own
    to the trainers it starts)."""
    from lib.data.images import set_limits
    from lib.settings import load_settings

    settings = load_settings()
    set_limits(settings.max_image_pixels, settings.max_image_frames)


if __name__ == "__main__":
    sys.exit(main())

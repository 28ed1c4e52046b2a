"""Commands import only what they use: `--help`, every `COMMAND --help`, `stats` and `inspect` load none of the
heavy packages, read from the interpreter's own record (`python -X importtime`), worker processes included."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from lib.commands import COMMANDS
from tests.helpers import write_imagefolder

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "altair", "streamlit", "captum", "torchmetrics", "matplotlib")


def imported(stderr: str) -> set[str]:
    """Top-level package names from `-X importtime` lines (`import time: self | cumulative | name`)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }


def light_commands(folder: Path) -> list[list[str]]:
    helps = [["--help"]] + [[c.name, "--help"] for c in COMMANDS]
    return helps + [["stats", str(folder), "--json"], ["inspect", str(folder), "--json"]]


def test_help_stats_and_inspect_import_nothing_heavy(tmp_path):
    folder = write_imagefolder(tmp_path / "data", per_class=2, size=(8, 8))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        (args, subprocess.Popen([sys.executable, "-X", "importtime", "-m", "lib", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for args in light_commands(folder)
    ]  # fmt: skip
    heavy = {}
    for args, proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{args}: {err[-2000:]}"
        if found := sorted(imported(err) & set(HEAVY)):
            heavy[" ".join(args).replace(str(folder), "DIR")] = found
    assert not heavy, f"commands that import heavy packages: {heavy}"


def test_help_imports_not_even_numpy_or_pillow():
    # Help only prints: the options' defaults and choices come from modules that import neither.
    helps = [["--help"]] + [[c.name, "--help"] for c in COMMANDS]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loaded = {}
    for args in helps:
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "lib", *args], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        if found := sorted(imported(done.stderr) & {"numpy", "PIL"}):
            loaded[" ".join(args)] = found
    assert not loaded, f"help that imports numpy or Pillow: {loaded}"


def test_the_reader_sees_a_heavy_import(tmp_path):
    # The check above passes vacuously if `imported` read nothing: prove it names what a process imports.
    code = "import json.decoder, tests.helpers"
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stderr
    assert {"json", "tests", "numpy", "PIL"} <= imported(err)


def test_every_command_module_is_in_the_table_and_defines_its_function():
    # A module added the old way (a `register` nobody calls) would be a command that never runs.
    helpers = {"__init__", "options", "plumbing", "train_ranks"}
    modules = {p.stem for p in (ROOT / "lib" / "commands").glob("*.py")} - helpers
    targets = [c.run.split(":") for c in COMMANDS]
    assert modules == {module for module, _ in targets}
    for module, function in targets:
        tree = ast.parse((ROOT / "lib" / "commands" / f"{module}.py").read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, f"{module}:{function}"

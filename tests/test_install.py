"""The package is installable: pyproject.toml's [project] names `lib` and requirements.txt, and the `torchscope`
console script is `python -m lib` (a console script runs `sys.exit(main())`). The editable install itself is
slow and wants the network, so it is checked by hand (docs: `make setup`)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import lib.__main__

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What pip writes into bin/torchscope, less the shebang.
CONSOLE_SCRIPT = "import sys; from lib.__main__ import main; sys.argv[0] = 'torchscope'; sys.exit(main())"


def test_the_console_script_is_lib_main():
    module, function = PROJECT["project"]["scripts"]["torchscope"].split(":")
    assert getattr(importlib.import_module(module), function) is lib.__main__.main


def test_packages_are_lib_and_dependencies_are_the_requirements():
    setuptools = PROJECT["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == ["lib*"]
    assert "dependencies" in PROJECT["project"]["dynamic"]
    assert setuptools["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    # setuptools reads only requirement lines: an option (-r, --index-url) would break the install.
    assert {Requirement(line).name for line in lines} >= {"torch", "streamlit", "pandas", "numpy", "pillow"}


@pytest.mark.parametrize(
    "args", [["--help"], ["runs", "--runs-dir", "runs", "--json"], ["stats", "no-such-folder"], ["no-such-command"]]
)
def test_torchscope_answers_as_python_m_lib(args, tmp_path):
    def answer(*launch):
        done = subprocess.run([sys.executable, *launch, *args], cwd=tmp_path, capture_output=True, text=True,
                              env={"PYTHONPATH": str(ROOT), "PATH": ""})  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    assert answer("-c", CONSOLE_SCRIPT) == answer("-m", "lib")

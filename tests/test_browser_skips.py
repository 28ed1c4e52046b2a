"""Without Playwright the browser tests are collected and skip with the reason; under CI=true they fail."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pytest in a process where `import playwright` fails, as on a machine without it.
NO_PLAYWRIGHT = "import sys; sys.modules['playwright'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def browser_tests(ci: str, *targets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": ci}
    args = [sys.executable, "-c", NO_PLAYWRIGHT, *targets, "-q", "-rs", "-p", "no:cacheprovider"]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_every_browser_module_collects_and_skips_with_the_reason():
    done = browser_tests("", "tests/browser")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "passed" not in summary and "error" not in summary, summary
    assert "playwright is not installed" in done.stdout


def test_under_ci_a_missing_playwright_fails():
    done = browser_tests("true", "tests/browser/test_navigation.py")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "browser tests must run under CI: playwright is not installed" in done.stdout

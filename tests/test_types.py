"""The type checker over the library (configured in pyproject.toml), as CI runs it."""

import subprocess
import sys

from conftest import ROOT


def test_mypy_finds_no_errors_in_began_core():
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff_looks_at_every_tracked_python_file():
    """A pattern in ruff's exclude list matches a folder name anywhere in the tree: "runs" meant
    for the dashboard's run folder once kept ruff out of began_core/runs/ unnoticed."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    seen = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    checked = {str((ROOT / p).resolve()) for p in tracked} & {
        line.strip() for line in seen.splitlines()
    }
    missed = sorted(p for p in tracked if str((ROOT / p).resolve()) not in checked)
    assert tracked and not missed, missed

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

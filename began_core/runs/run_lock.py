"""One writer per run: the process that trains a run holds an exclusive lock on `RUN/.lock`.

The lock is the kernel's `flock`, so it goes with the process: a killed run leaves no stale lock
behind, and the next `train --resume` takes it at once. The file says who holds it (pid and
command), for the one-line refusal a second writer gets.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from ..config import ConfigError
from ..faults import write_error

LOCK_FILE = ".lock"


class RunLockedError(ConfigError):
    """Another process is writing this run."""


class RunLock:
    """`acquire()` or a RunLockedError naming the holder; released by `release()` or when the
    process ends."""

    def __init__(self, run_path: str | os.PathLike) -> None:
        self.run_path = Path(run_path)
        self.path = self.run_path / LOCK_FILE
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self.held:
            return
        try:
            self.path.touch(exist_ok=True)
        except OSError as e:
            raise (write_error(e, self.run_path, "lock file (.lock)") or e) from e
        # Held open read-only: a file open for writing would keep its file system from being
        # remounted read-only (and flock needs no write access).
        f = open(self.path, encoding="utf-8")  # noqa: SIM115 (held open while training)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = f.read().strip() or "another process"
            f.close()
            raise RunLockedError(refusal(self.run_path, who)) from None
        self.path.write_text(f"process {os.getpid()} ({' '.join(sys.argv) or 'python'})\n")
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None


def holder(run_path: str | os.PathLike) -> str | None:
    """Who writes the run now ("process PID (command)"), or None when nobody does."""
    path = Path(run_path) / LOCK_FILE
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def refusal(run_path: Path, who: str) -> str:
    return (
        f"{run_path} is being written by {who}: one process trains a run at a time. Wait for "
        f"it to end, stop it (create {run_path / 'STOP'}, or stop it in the dashboard), or "
        "choose another --out."
    )

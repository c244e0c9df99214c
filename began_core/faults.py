"""Fault injection for the crash-consistency tests, and the error a failed run write raises.

Every file operation of the run directory (a file written, an fsync, a rename, a deletion)
calls `point(what)`. With `BEGAN_FAULT_KILL_AFTER=k` in the environment the process kills
itself with SIGKILL right after its k-th such operation, so a test can crash a run at every
point of a checkpoint write, deterministically. `BEGAN_FAULT_LOG=FILE` appends the name of
every operation to FILE (one a line), which is how a test counts them. Unset (always, outside
tests), `point` only reads the environment.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

KILL_ENV = "BEGAN_FAULT_KILL_AFTER"
LOG_ENV = "BEGAN_FAULT_LOG"
_done = 0

# What a failed write looks like: the OS's errors, safetensors' Rust error, torch's zip writer.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def point(what: str) -> None:
    """One file operation of the run directory has just completed."""
    global _done
    log, kill = os.environ.get(LOG_ENV), os.environ.get(KILL_ENV)
    if not (log or kill):
        return
    _done += 1
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{_done} {what}\n")
    if kill and _done == int(kill):
        os.kill(os.getpid(), signal.SIGKILL)


class RunWriteError(OSError):
    """A file of a run could not be written: the disk is full, or the folder is read-only.
    The message names the folder and the fix; the run's previous checkpoint is untouched."""


def write_error(error: BaseException, folder: Path, what: str) -> RunWriteError | None:
    """A RunWriteError for `error` if it is a full disk or an unwritable folder, else None.

    `folder` is the run directory; `what` is what could not be written ("checkpoint step 40")."""
    if isinstance(error, RunWriteError):
        return error
    code = getattr(error, "errno", None)
    text = str(error)
    full = code in _FULL or "os error 28" in text or "No space left" in text
    # torch.save into a full disk fails in its zip writer with "unexpected pos N vs M".
    full = full or (isinstance(error, RuntimeError) and "unexpected pos" in text)
    denied = code in _DENIED or "os error 13" in text or "os error 30" in text
    if full:
        return _error(
            errno.ENOSPC,
            f"the disk holding {folder} is full: the {what} could not be written. Free space "
            f"on that disk, then resume with --resume {folder}; the last complete checkpoint "
            "is kept.",
        )
    if denied:
        return _error(
            errno.EACCES,
            f"{folder} is not writable (read-only or permission denied): the {what} could "
            f"not be written. Make the folder writable, then resume with --resume {folder}; "
            "the last complete checkpoint is kept.",
        )
    return None


def _error(code: int, message: str) -> RunWriteError:
    error = RunWriteError(message)  # one argument: str(error) is the message alone
    error.errno = code
    return error

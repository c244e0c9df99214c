"""Whole or not at all: every file the project replaces is written here, so a reader (or a
kill at any moment) sees the old version or the new one, never half of either.

The bytes go to a temporary file beside the target, are fsynced, and the temporary file is
renamed over the target; then the folder is fsynced, so the rename itself survives a crash.
Each step is a kill point of the fault suite (`faults.point`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .faults import point

__all__ = ["fsync_dir", "write_bytes", "write_file", "write_text"]


def write_file(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], tmp: Path | None = None
) -> Path:
    """Replace `path` with what `write(f)` writes into an open binary file. `tmp` names the
    temporary file (beside `path`; by default `.NAME.tmpPID`); it never outlives a failure."""
    path = Path(path)
    tmp = tmp or path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            point(f"write {tmp.name}")
            os.fsync(f.fileno())
            point(f"fsync {tmp.name}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    point(f"rename {tmp.name} -> {path.name}")
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, tmp: Path | None = None) -> Path:
    return write_file(path, lambda f: f.write(data), tmp)


def write_text(path: str | os.PathLike, text: str, tmp: Path | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), tmp)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable; where the folder cannot be opened or synced (some
    file systems), there is nothing more to do."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    point(f"fsync {path.name}/")

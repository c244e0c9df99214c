"""The pictures the explorer's handlers return, handed to Gradio as whole PNG files.

Given a numpy array, Gradio encodes it and writes the bytes in place to a path named by their
hash. Two requests that render the same picture at once (two visitors on the same seed, or a
client repeating itself) write the same path while the first response is being streamed from
it, and that response ends short of its Content-Length: the browser, or a client, loses it.
Given a file path instead, Gradio copies the file into its cache under a temporary name and
renames it into place, which a concurrent reader never sees half-done. So each picture is
written here, under a name of its own, and its path is what the handler returns.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

KEEP = 256  # files kept; Gradio has copied each one long before this many more are written


class ServedImages:
    """A private folder of PNG files, one per picture returned, the oldest removed past `keep`."""

    def __init__(self, keep: int = KEEP) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="began-explorer-"))
        self.keep = keep
        self._written: deque[Path] = deque()
        self._names = itertools.count()
        self._lock = threading.Lock()
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)

    def file(self, picture: np.ndarray) -> str:
        """`picture` (H x W or H x W x C, uint8) as a PNG file of its own; its path."""
        with self._lock:
            path = self.folder / f"{next(self._names)}.png"
        staging = path.with_suffix(".part")
        Image.fromarray(picture).save(staging, format="PNG")
        os.replace(staging, path)
        with self._lock:
            self._written.append(path)
            while len(self._written) > self.keep:
                self._written.popleft().unlink(missing_ok=True)
        return str(path)

    def files(self, value: Any) -> Any:
        """`value` with every picture in it (also inside lists, tuples and gallery pairs)
        replaced by its file; everything else (text, numbers, updates) as it was."""
        if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (2, 3):
            return self.file(value)
        if isinstance(value, list):
            return [self.files(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.files(v) for v in value)
        return value

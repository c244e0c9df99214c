"""What the data modules raise when a dataset cannot be opened: :class:`DatasetError`, whose
message says what is wrong and how to fix it, and ``_size``, how those messages write a byte
count. It imports nothing of the package, so every module here can import it.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset cannot be opened; the message says what is wrong and how to fix it."""


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"

"""Writing a safetensors file with the mode every other file of a folder gets.

`safetensors.torch.save_file` creates its file readable by the owner only (0600), whatever the
umask, so an exported or shipped generator could not be read by anyone else on a shared
machine or in a checkout. The bytes are the same; only the file is opened as Python opens any.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save

__all__ = ["save_weights"]


def save_weights(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write `state` as safetensors at `path` (with the umask's mode) and fsync it. Not
    atomic by itself: checkpoints and exports are built in a temporary folder renamed whole."""
    path = Path(path)
    data = save(state, metadata={"format": "pt"})
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path

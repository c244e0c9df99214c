"""Tensor <-> picture conversions shared by the trainer, the explorer and the dashboard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_uint8(x: Tensor) -> np.ndarray:
    """Images in [-1, 1], (B, C, H, W) -> uint8 (B, H, W, C); greyscale keeps C = 1."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(x: Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1] -> PIL image (RGB or L)."""
    a = to_uint8(x.unsqueeze(0))[0]
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def make_grid(
    x: Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 255
) -> Image.Image:
    """A grid of images (B, C, H, W) in [-1, 1], `nrow` per row (default: square-ish)."""
    a = to_uint8(x)
    B, H, W, C = a.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    rows = math.ceil(B / nrow)
    grid = np.full(
        (rows * (H + padding) + padding, nrow * (W + padding) + padding, C), pad_value, np.uint8
    )
    for i in range(B):
        r, c = divmod(i, nrow)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[top : top + H, left : left + W] = a[i]
    return Image.fromarray(grid[..., 0] if C == 1 else grid)


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write a PNG grid atomically (temp file, then rename), so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    make_grid(x, nrow).save(tmp, format="PNG")
    tmp.replace(path)
    return path

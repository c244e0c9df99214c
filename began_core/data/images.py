"""Pictures in and out: decoding an image file as the training data is prepared, checking and
preparing untrusted uploads, and tensor <-> picture conversions. Shared by the data loader,
the trainer, the explorer and the dashboard."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ..atomic import write_file

CELEBA_SIZE = (178, 218)  # aligned CelebA images, width x height
CELEBA_BOX = (25, 50, 153, 178)  # the BEGAN paper's 128x128 face crop (left, top, right, bottom)
# prepare_image refuses anything larger: a decompression bomb must fail before it is decoded.
MAX_PIXELS = 4096 * 4096
MAX_BYTES = 20 * 2**20


def to_uint8(x: Tensor) -> np.ndarray:
    """Images in [-1, 1], (B, C, H, W) -> uint8 (B, H, W, C); greyscale keeps C = 1."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def to_pil(x: Tensor) -> Image.Image:
    """One image (C, H, W) in [-1, 1] -> PIL image (RGB or L)."""
    a = to_uint8(x.unsqueeze(0))[0]
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: every pixel becomes `factor` x `factor`, so small images stay
    sharp on screen. `a` is (H, W), (H, W, C) or a batch (B, H, W, C)."""
    if factor <= 1:
        return a
    h = 1 if a.ndim == 4 else 0
    return a.repeat(factor, axis=h).repeat(factor, axis=h + 1)


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
    grid = make_grid(x, nrow)
    return write_file(path, lambda f: grid.save(f, format="PNG"))


# --------------------------------------------------------------------------- decoding files


def load_image(src, resolution: int, channels: int, crop: bool = False) -> np.ndarray:
    """Decode one image file (path or file object) to uint8 (C, R, R): alpha onto white,
    centre square crop (or the CelebA box when ``crop``), high-quality resize."""
    with Image.open(src) as opened:
        im: Image.Image = opened
        if opened.format == "JPEG":  # let libjpeg shrink big photos, keeping >= 2x the target size
            side = min(im.size) * ((CELEBA_BOX[2] - CELEBA_BOX[0]) / CELEBA_SIZE[0] if crop else 1)
            s = max(1.0, side / (2 * resolution))
            opened.draft("RGB", (math.ceil(im.size[0] / s), math.ceil(im.size[1] / s)))
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        if crop:  # the CelebA box, scaled if the image is not exactly 178x218
            scale = (w / CELEBA_SIZE[0], h / CELEBA_SIZE[1]) * 2
            left, top, right, bottom = (
                round(v * f) for v, f in zip(CELEBA_BOX, scale, strict=True)
            )
            im = im.crop((left, top, right, bottom))
        elif w != h:
            side = min(w, h)
            im = im.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(im, dtype=np.float32)
            im = Image.fromarray(np.clip(a / 257 if a.max() > 255 else a, 0, 255).astype(np.uint8))
        if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (resolution, resolution):  # crop first: no filter bleed from outside
            flt = Image.Resampling.LANCZOS if im.size[0] > resolution else Image.Resampling.BICUBIC
            im = im.resize((resolution, resolution), flt)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


# --------------------------------------------------------------------------- untrusted input


def prepare_image(
    image: Image.Image | np.ndarray | str | os.PathLike | bytes, resolution: int, channels: int
) -> tuple[Tensor, list[str]]:
    """Any picture -> (C, R, R) float tensor in [-1, 1] for a model, with notes on what changed.

    Accepts a PIL image, an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (uint8, or float in
    [0, 1]), a file path or the file's bytes. Prepared as the training data is
    (`load_image`): alpha onto white, centre square crop, resize. Colour and greyscale are
    converted to what the model makes, with a note. Raises ValueError for what is not an image,
    a file over 20 MB, or more than 4096 x 4096 pixels (checked before decoding).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"no image file at {path}")
        _check_bytes(path.stat().st_size)
        source: io.BytesIO | Path = path
    elif isinstance(image, (bytes, bytearray)):
        _check_bytes(len(image))
        source = io.BytesIO(image)
    elif isinstance(image, np.ndarray):
        source = _png(_array_to_pil(image))
    elif isinstance(image, Image.Image):
        source = _png(image)
    else:
        raise ValueError(f"not an image: got a {type(image).__name__}")
    try:
        with Image.open(source) as im:
            size, mode = im.size, im.mode
            if size[0] * size[1] > MAX_PIXELS:
                raise ValueError(
                    f"the image is {size[0]} x {size[1]} pixels; the limit is "
                    f"{MAX_PIXELS:,} pixels (4096 x 4096): scale it down first."
                )
        if isinstance(source, io.BytesIO):
            source.seek(0)
        u8 = load_image(source, resolution, channels)  # (C, R, R)
    except UnidentifiedImageError:
        raise ValueError(
            "not an image: the file could not be read as PNG, JPEG, WebP, BMP, GIF or any "
            "other picture format."
        ) from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"the image file is corrupt or truncated: {e}") from None
    notes = []
    grey = mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
    if grey and channels == 3:
        notes.append("greyscale image converted to RGB: this model makes colour images")
    elif not grey and channels == 1 and mode != "P":
        notes.append("colour image converted to greyscale: this model makes greyscale images")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        notes.append("transparent parts put on white, as in the training data")
    if size[0] != size[1]:
        notes.append(f"{size[0]} x {size[1]} image centre-cropped to a square")
    if max(size) != resolution:
        notes.append(f"resized to {resolution} x {resolution}")
    x = torch.from_numpy(u8.astype(np.float32)).div_(127.5).sub_(1.0)
    return x, notes


def _check_bytes(n: int) -> None:
    if n > MAX_BYTES:
        raise ValueError(f"the file is {n / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")


def _png(im: Image.Image) -> io.BytesIO:
    """A PIL image as an in-memory PNG, so that one decoder (load_image) prepares
    every input the way the training data was prepared."""
    if im.width * im.height > MAX_PIXELS:
        raise ValueError(
            f"the image is {im.width} x {im.height} pixels; the limit is {MAX_PIXELS:,} pixels "
            "(4096 x 4096): scale it down first."
        )
    if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", compress_level=1)
    buffer.seek(0)
    return buffer


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(
            f"not an image: an array of shape {a.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
            "or (H, W, 4)"
        )
    if a.size == 0:
        raise ValueError("not an image: the array is empty")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise ValueError(f"not an image: an array of {a.dtype} with non-finite values")
        scale = 255.0 if a.max() <= 1.0 else 1.0  # floats in [0, 1], or already 0..255
        a = np.clip(a.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)

"""Image datasets for BEGAN: built-in sets, folders, zips and CelebA, decoded once to uint8.

``open_dataset(source, resolution, channels)`` returns an :class:`ImageDataset` whose images are
held as one uint8 array of shape (N, C, R, R); ``batch`` turns rows of it into float32 tensors in
[-1, 1].  Big folders and zips are decoded once (in parallel) into a ``.npy`` cache under
``$BEGAN_CACHE`` (default ``~/.cache/began_studio``) and memory-mapped on later opens.
Built-in names are listed in ``BUILTIN_DATASETS`` (see ``builtin_data.py``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CELEBA_SIZE = (178, 218)  # aligned CelebA images, width x height
CELEBA_BOX = (25, 50, 153, 178)  # the BEGAN paper's 128x128 face crop (left, top, right, bottom)
POOL_MIN_FILES = 2000  # decode with a process pool above this many files
CACHE_MIN_FILES = 1000  # cache folders / zips with at least this many files as .npy
PROGRESS_MIN_FILES = 500  # show a progress bar above this many files

BUILTIN_DATASETS: dict[str, str] = {
    "fluent-faces": "1,124 faces and people from Microsoft's Fluent Emoji 3D, colour, 18 labels; "
    "shipped 64x64 copy, no download (MIT)",
    "fluent-faces@full": "the same 1,124 faces rebuilt at up to 256x256 from the npm package "
    "@lobehub/fluent-emoji-3d 1.1.0; needs npm on first use (MIT)",
    "fluent": "all 3,391 Fluent Emoji 3D images, colour, 98 labels, up to 256x256; fetched with "
    "npm on first use (MIT)",
    "fashion-mnist": "70,000 real 28x28 greyscale clothing photos, 10 labels, padded to 32; "
    "from Debian's dataset-fashion-mnist (MIT)",
    "shapes": "512 procedural circles, squares and triangles, colour, 3 labels; generated "
    "instantly, for tests and demos (public domain)",
}


class DatasetError(ValueError):
    """A dataset cannot be opened; the message says what is wrong and how to fix it."""


class ImageDataset(torch.utils.data.Dataset):
    """Images held as one uint8 array (N, C, R, R); items are float32 tensors in [-1, 1]."""

    def __init__(
        self,
        array: np.ndarray,
        *,
        source: str,
        description: str,
        skipped: int = 0,
        labels: np.ndarray | None = None,
        class_names: list[str] | None = None,
        cache_path: str | None = None,
    ):
        if array.ndim != 4 or array.dtype != np.uint8 or array.shape[2] != array.shape[3]:
            raise ValueError(f"need a uint8 (N, C, R, R) array, not {array.dtype} {array.shape}")
        self._array = array
        self.channels, self.resolution = int(array.shape[1]), int(array.shape[2])
        self.source, self.description, self.skipped = source, description, int(skipped)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and len(self.labels) != len(array):
            raise ValueError(f"{len(self.labels)} labels for {len(array)} images")
        self.class_names = None if class_names is None else list(class_names)
        self.cache_path = cache_path  # the .npy the images are memory-mapped from, if any

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batch([i])[0]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Float32 (B, C, R, R) in [-1, 1] for the given image indices."""
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        u8 = torch.from_numpy(np.ascontiguousarray(self._array[idx]))
        return u8.to(torch.float32).div_(127.5).sub_(1.0)

    def uint8(self) -> np.ndarray:
        """All images as a (N, C, R, R) uint8 array (read-only memmap when cached)."""
        return self._array

    def __repr__(self) -> str:
        return f"ImageDataset({self.source!r}, n={len(self)}, {self.channels}x{self.resolution}px)"

    def __getstate__(self):  # a cached memmap travels to worker processes as its path
        state = self.__dict__.copy()
        if self.cache_path and isinstance(self._array, np.memmap):
            state["_array"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._array is None:
            self._array = np.load(self.cache_path, mmap_mode="r")


def _positive_int(value, what: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{what} must be a positive integer{example}, got {value!r}")


def open_dataset(
    source: str | os.PathLike,
    resolution: int,
    channels: int = 3,
    *,
    celeba_crop: bool | None = None,
    max_images: int | None = None,
) -> ImageDataset:
    """Open a built-in dataset (see ``BUILTIN_DATASETS``), a folder of images or a .zip of images.

    Images are composited onto white, centre-cropped to a square (or given the CelebA crop) and
    resized to ``resolution``.  ``max_images`` keeps a fixed, evenly spread random subset.
    A folder whose images sit in two or more sub-folders gets the sub-folder names as labels.
    Built-in names win over same-named paths: write ``./shapes`` for a folder called shapes.
    """
    _positive_int(resolution, "resolution", " such as 32 or 64")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (greyscale) or 3 (colour), got {channels!r}")
    if max_images is not None:
        _positive_int(max_images, "max_images", " or None")
    resolution, name = int(resolution), os.fspath(source)
    if name.lower() in BUILTIN_DATASETS:
        from . import builtin_data

        return builtin_data.open_builtin(name.lower(), resolution, channels, max_images)
    path = Path(name).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(name.lower(), BUILTIN_DATASETS, n=1)
        raise DatasetError(
            f"dataset {name!r} not found: no such file or folder ({path.absolute()})."
            + (f" Did you mean {close[0]!r}?" if close else "")
            + f" Give a folder or .zip of images, or a built-in name: {', '.join(BUILTIN_DATASETS)}."
        )
    zip_path = None
    if path.is_dir():
        files = _scan_folder(path)
    elif zipfile.is_zipfile(path):
        zip_path = str(path.resolve())
        with zipfile.ZipFile(path) as zf:
            files = sorted(n for n in zf.namelist() if _is_image_name(n))
    else:
        raise DatasetError(
            f"{name!r} is a file but not a .zip: give a folder of images, or a .zip of them."
        )
    kind = "zip" if zip_path else "folder"
    if not files:
        raise DatasetError(
            f"no images found in the {kind} {str(path)!r}: searched recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case). Point to a {kind} that contains images."
        )
    labels, class_names = _folder_labels(files)
    if max_images is not None and max_images < len(files):
        keep = subset_indices(len(files), max_images)
        files = [files[i] for i in keep]
        labels = None if labels is None else labels[keep]
    if celeba_crop is None:
        celeba_crop = _looks_like_celeba(path, files, zip_path)
    mtime = (
        os.stat(zip_path).st_mtime if zip_path else max(os.stat(path / f).st_mtime for f in files)
    )
    key = dict(
        kind=kind,
        path=str(path.resolve()),
        n=len(files),
        mtime=mtime,
        resolution=resolution,
        channels=channels,
        crop=bool(celeba_crop),
        max_images=max_images,
    )
    desc = f"images from the {kind} {path.name}" + (", CelebA crop" if celeba_crop else "")
    jobs = [(zip_path, f) if zip_path else (None, str(path / f)) for f in files]
    return decode_to_dataset(
        jobs,
        key,
        cache=len(files) >= CACHE_MIN_FILES,
        source=name,
        description=desc,
        labels=labels,
        class_names=class_names,
    )


def subset_indices(n: int, k: int) -> np.ndarray:
    """A fixed random subset of k of range(n), in increasing order (same every call)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(k, n), replace=False))


def _is_image_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _scan_folder(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        for fn in filenames:
            if _is_image_name(fn):
                found.append(fn if rel == "." else os.path.join(rel, fn))
    return sorted(found)


def _folder_labels(files: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Class labels from first-level sub-folders (ImageFolder style), when there are 2 or more."""
    parts = [f.replace("\\", "/").split("/") for f in files]
    while all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # strip a common wrapper folder
    if any(len(p) < 2 for p in parts) or len({p[0] for p in parts}) < 2:
        return None, None
    names = sorted({p[0] for p in parts})
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[p[0]] for p in parts], dtype=np.int64), names


def _looks_like_celeba(path: Path, files: list[str], zip_path: str | None) -> bool:
    """True for a folder or zip called img_align_celeba, or when (almost) all are 178x218."""
    tops = {f.replace("\\", "/").split("/")[0] for f in files}
    if "img_align_celeba" in (path.name, path.stem) or tops == {"img_align_celeba"}:
        return True
    sample = [files[i] for i in np.linspace(0, len(files) - 1, min(32, len(files))).astype(int)]
    hits = 0
    with zipfile.ZipFile(zip_path) if zip_path else contextlib.nullcontext() as zf:
        for f in sample:
            try:
                with Image.open(zf.open(f) if zf else path / f) as im:
                    hits += im.size == CELEBA_SIZE
            except Exception:
                pass
    return hits >= 0.9 * len(sample)


# --------------------------------------------------------------------------- decoding


def load_image(src, resolution: int, channels: int, crop: bool = False) -> np.ndarray:
    """Decode one image file (path or file object) to uint8 (C, R, R): alpha onto white,
    centre square crop (or the CelebA box when ``crop``), high-quality resize."""
    with Image.open(src) as im:
        if im.format == "JPEG":  # let libjpeg shrink big photos, keeping >= 2x the target size
            side = min(im.size) * ((CELEBA_BOX[2] - CELEBA_BOX[0]) / CELEBA_SIZE[0] if crop else 1)
            s = max(1.0, side / (2 * resolution))
            im.draft("RGB", (math.ceil(im.size[0] / s), math.ceil(im.size[1] / s)))
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        if crop:  # the CelebA box, scaled if the image is not exactly 178x218
            scale = (w / CELEBA_SIZE[0], h / CELEBA_SIZE[1]) * 2
            im = im.crop(tuple(round(v * f) for v, f in zip(CELEBA_BOX, scale, strict=True)))
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
            flt = Image.LANCZOS if im.size[0] > resolution else Image.BICUBIC
            im = im.resize((resolution, resolution), flt)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


_ZIPS: dict[str, zipfile.ZipFile] = {}


def _decode_job(job) -> np.ndarray | str:
    """Worker: job = (zip path or None, file or member, resolution, channels, crop)."""
    zip_path, name, resolution, channels, crop = job
    try:
        if zip_path:
            if zip_path not in _ZIPS:
                _ZIPS[zip_path] = zipfile.ZipFile(zip_path)
            with _ZIPS[zip_path].open(name) as f:
                return load_image(io.BytesIO(f.read()), resolution, channels, crop)
        return load_image(name, resolution, channels, crop)
    except Exception as e:  # corrupt, truncated or unsupported: the caller skips and counts it
        return f"{type(e).__name__}: {e}"


def _results(jobs: list, desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=len(jobs) < PROGRESS_MIN_FILES)
    workers = min(os.cpu_count() or 1, 8)
    try:
        if len(jobs) > POOL_MIN_FILES and workers > 1:
            # Never "fork": torch's thread pools make a forked child deadlock on their locks.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ctx.Pool(workers) as pool:
                for r in pool.imap(_decode_job, jobs, chunksize=32):
                    bar.update()
                    yield r
        else:
            for j in jobs:
                bar.update()
                yield _decode_job(j)
    finally:
        bar.close()


def decode_to_dataset(jobs: list, key: dict, *, cache: bool = True, **info) -> ImageDataset:
    """Decode ``(zip path or None, file or member)`` jobs at ``key``'s resolution, channels and
    crop into an ImageDataset, through the .npy cache when ``cache``.  ``info`` holds the
    ImageDataset's ``source``, ``description`` (prefixed with the count) and optional ``labels``
    and ``class_names`` (labels are filtered along with unreadable files)."""
    res, ch, crop, n = key["resolution"], key["channels"], key.get("crop", False), len(jobs)
    path = cache_path(key) if cache else None
    hit = _cache_load(path) if path else None
    if hit is not None:
        arr, meta = hit
        info.update(labels=meta["labels"], class_names=meta["class_names"])
        info["description"] = f"{len(arr)} {info['description']}"
        return ImageDataset(arr, skipped=meta["skipped"], cache_path=str(path), **info)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy") if path else None
    try:
        if tmp is not None:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            arr = np.lib.format.open_memmap(tmp, "w+", np.uint8, (n, ch, res, res))
    except OSError as e:
        warnings.warn(
            f"cannot write the dataset cache in {path.parent} ({e}); decoding into memory "
            "instead. Set BEGAN_CACHE to a writable folder.",
            stacklevel=2,
        )
        path = tmp = None
    arr = np.empty((n, ch, res, res), np.uint8) if tmp is None else arr
    kept, errors = [], []
    try:
        work = [(z, f, res, ch, crop) for z, f in jobs]
        for i, r in enumerate(_results(work, f"decoding {info['source']}")):
            if isinstance(r, str):
                errors.append(f"{jobs[i][1]}: {r}")
                (log.warning if len(errors) <= 10 else log.debug)("skipping %s", errors[-1])
            else:
                arr[len(kept)] = r
                kept.append(i)
        if not kept:
            raise DatasetError(
                f"all {n} image files in {info['source']!r} were unreadable (first: "
                f"{errors[0]}). Check that they are real, complete images."
            )
        if errors:
            warnings.warn(
                f"skipped {len(errors)} of {n} unreadable image files in "
                f"{info['source']!r} (first: {errors[0]})",
                stacklevel=2,
            )
        if info.get("labels") is not None:
            info["labels"] = np.asarray(info["labels"], dtype=np.int64)[kept]
        if tmp is not None:
            arr.flush()
            del arr
            _truncate_npy(tmp, len(kept))
            lab = None if info.get("labels") is None else info["labels"].tolist()
            meta = {"key": key, "skipped": len(errors), "labels": lab}
            _atomic_write_text(
                path.with_suffix(".json"),
                json.dumps(meta | {"class_names": info.get("class_names")}),
            )
            os.replace(tmp, path)
            arr = np.load(path, mmap_mode="r")
        else:
            arr = arr[: len(kept)]
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    info["description"] = f"{len(arr)} {info['description']}"
    return ImageDataset(arr, skipped=len(errors), cache_path=str(path) if path else None, **info)


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$BEGAN_CACHE``, or ``~/.cache/began_studio``."""
    env = os.environ.get("BEGAN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "began_studio"


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / "arrays" / f"{key.get('kind', 'data')}-{digest[:20]}.npy"


def _cache_load(path: Path):
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arr = np.load(path, mmap_mode="r")
        if meta["labels"] is not None and len(meta["labels"]) != len(arr):
            return None
        return arr, meta
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring damaged dataset cache %s (%s)", path, e)
        return None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _truncate_npy(path: Path, n: int) -> None:
    """Shrink an .npy file in place to its first n rows (rewrites the header, same length)."""
    with open(path, "r+b") as f:
        if np.lib.format.read_magic(f) != (1, 0):  # open_memmap writes 1.0 for small headers
            raise ValueError(f"unexpected .npy version in {path}")
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
        if shape[0] == n:
            return
        head = (
            f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
            f"'shape': {(n, *shape[1:])!r}, }}"
        )
        size = offset - 10  # magic (6) + version (2) + header length (2)
        head = head.ljust(size - 1) + "\n"
        f.seek(0)
        f.write(np.lib.format.magic(1, 0) + size.to_bytes(2, "little"))
        f.write(head.encode("latin1"))
        f.truncate(offset + n * int(np.prod(shape[1:])) * dtype.itemsize)

"""The images BEGAN trains on, decoded once: :class:`ImageDataset` holds them as one uint8 array
(N, C, R, R) and hands out float32 batches in [-1, 1]; ``decode_to_dataset`` builds one from
image files (in parallel for big sets) through a ``.npy`` cache under ``$BEGAN_CACHE`` (default
``~/.cache/began_studio``), memory-mapped on later opens.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import logging
import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .images import load_image

log = logging.getLogger(__name__)

POOL_MIN_FILES = 2000  # decode with a process pool above this many files
PROGRESS_MIN_FILES = 500  # show a progress bar above this many files


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


def subset_indices(n: int, k: int) -> np.ndarray:
    """A fixed random subset of k of range(n), in increasing order (same every call)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(k, n), replace=False))


# --------------------------------------------------------------------------- decoding


_ZIPS: dict[str, zipfile.ZipFile] = {}
# While set, decoding asks this between images and stops (DecodingStopped) when it says so:
# a Ctrl-C or SIGTERM during a decode of CelebA would otherwise wait minutes for its end.
_STOP: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "stop_decoding", default=None
)


class DecodingStopped(DatasetError):
    """Decoding was stopped by request (Ctrl-C, SIGTERM); nothing of it was kept."""


@contextlib.contextmanager
def stopping(should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Decoding inside this block stops as soon as `should_stop()` turns True."""
    token = _STOP.set(should_stop)
    try:
        yield
    finally:
        _STOP.reset(token)


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
    should_stop = _STOP.get()
    try:
        work = [(z, f, res, ch, crop) for z, f in jobs]
        for i, r in enumerate(_results(work, f"decoding {info['source']}")):
            if should_stop is not None and should_stop():
                raise DecodingStopped(
                    f"stopped while decoding {info['source']!r} ({i} of {n} images): nothing "
                    "was trained or written, and no partial cache was kept."
                )
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

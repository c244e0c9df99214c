"""The images BEGAN trains on, decoded once: :class:`ImageDataset` holds them as one uint8
array (N, C, R, R) and hands out float32 batches in [-1, 1]; ``decode_to_dataset`` builds one
from image files, which decoding.py decodes (in parallel for big sets, stopped at once by
Ctrl-C or SIGTERM), into an entry of the decoded-dataset cache (cache.py, memory-mapped on later
opens), or into memory where the cache is off or its folder is not writable, refused with a
clear message where the memory is short (memory.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import (
    _atomic_write_text,
    _cache_load,
    _hold_entry,
    _memory_error,
    _quietly_evict,
    _reserve,
    _truncate_npy,
    cache_key,
    cache_limit,
    cache_path,
)
from .decoding import PROGRESS_MIN_FILES, _close_zips, _results, _stop_requests
from .errors import DatasetError
from .memory import available_memory

log = logging.getLogger(__name__)


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
        self._hold: Any = None  # the open cache entry, shared-locked: eviction leaves it alone

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batch([i])[0]

    def batch(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> torch.Tensor:
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
        state["_hold"] = None
        if self.cache_path and isinstance(self._array, np.memmap):
            state["_array"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._array is None:
            self._hold = _hold_entry(Path(self.cache_path))
            self._array = np.load(self.cache_path, mmap_mode="r")


def subset_indices(n: int, k: int) -> np.ndarray:
    """A fixed random subset of k of range(n), in increasing order (same every call)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(k, n), replace=False))


def decode_to_dataset(jobs: list, key: dict, *, cache: bool = True, **info) -> ImageDataset:
    """Decode ``(zip path or None, file or member)`` jobs at ``key``'s resolution, channels and
    crop into an ImageDataset, through the .npy cache when ``cache`` (and ``$BEGAN_CACHE_MAX_GB``
    is not 0).  ``key`` says what the images are made from (kind, path or name, settings); the
    files' own state is added to it here (``files_fingerprint``).  ``info`` holds the
    ImageDataset's ``source``, ``description`` (prefixed with the count) and optional ``labels``
    and ``class_names`` (labels are filtered along with unreadable files)."""
    res, ch, crop, n = key["resolution"], key["channels"], key.get("crop", False), len(jobs)
    source = info["source"]
    if n == 0:
        raise DatasetError(f"no image files to decode in {source!r}")
    limit = cache_limit() if cache else 0
    full_key = cache_key(key, jobs) if limit else None
    path = cache_path(full_key) if full_key is not None else None
    say = log.info if n >= PROGRESS_MIN_FILES else log.debug  # start-up lines, large sets only
    if path is not None:
        hit = _cache_load(path)
        if hit is not None:
            arr, meta, hold = hit
            say("%s: %d images, decoded before (cache %s)", source, len(arr), path.name)
            _quietly_evict(limit, 0, keep=path)  # the bound may have been lowered since
            info.update(labels=meta["labels"], class_names=meta["class_names"])
            info["description"] = f"{len(arr)} {info['description']}"
            ds = ImageDataset(arr, skipped=meta["skipped"], cache_path=str(path), **info)
            ds._hold = hold
            return ds
    shape, hold, tmp = (n, ch, res, res), None, None
    _close_zips()  # one opened by an earlier decode may since have been rewritten
    kept: list[int] = []
    errors: list[str] = []
    kept_for = "; kept for the next run" if path is not None else ""
    say("%s: %d images to decode at %dx%d%s", source, n, res, res, kept_for)
    with _stop_requests() as stop:
        try:
            reserved = _reserve(path, shape, source, limit) if path is not None else None
            if reserved is None:  # no cache, or its folder is not writable
                path, arr = None, _in_memory(shape, source)
            else:
                arr, tmp = reserved
            work = [(z, f, res, ch, crop) for z, f in jobs]
            for i, r in enumerate(_results(work, source, stop)):
                if isinstance(r, str):
                    errors.append(f"{jobs[i][1]}: {r}")
                    (log.warning if len(errors) <= 10 else log.debug)("skipping %s", errors[-1])
                else:
                    arr[len(kept)] = r
                    kept.append(i)
            if not kept:
                raise DatasetError(
                    f"all {n} image files in {source!r} were unreadable (first: "
                    f"{errors[0]}). Check that they are real, complete images."
                )
            if info.get("labels") is not None:
                info["labels"] = np.asarray(info["labels"], dtype=np.int64)[kept]
            if tmp is not None and path is not None:
                arr.flush()
                del arr
                _truncate_npy(tmp, len(kept))
                lab = None if info.get("labels") is None else info["labels"].tolist()
                meta = {
                    "key": full_key,
                    "skipped": len(errors),
                    "labels": lab,
                    "class_names": info.get("class_names"),
                    "images": len(kept),
                    "created": time.time(),
                }
                _atomic_write_text(path.with_suffix(".json"), json.dumps(meta))
                hold = _hold_entry(tmp)  # locked before it is renamed: never evicted unused
                os.replace(tmp, path)
                tmp = None
                arr = np.load(path, mmap_mode="r")
            else:
                arr = arr[: len(kept)]
        finally:
            _close_zips()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
    if errors:
        warnings.warn(
            f"skipped {len(errors)} of {n} unreadable image files in {source!r} (first: "
            f"{errors[0]})",
            stacklevel=2,
        )
    info["description"] = f"{len(arr)} {info['description']}"
    ds = ImageDataset(arr, skipped=len(errors), cache_path=str(path) if path else None, **info)
    ds._hold = hold
    return ds


def _in_memory(shape: tuple[int, ...], source: str) -> np.ndarray:
    """An empty array for the decode, refused with a clear message where memory is short."""
    nbytes = int(np.prod(shape))
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise _memory_error(shape, source, avail)
    try:
        return np.empty(shape, np.uint8)
    except MemoryError:
        raise _memory_error(shape, source, avail) from None

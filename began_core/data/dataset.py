"""The images BEGAN trains on, decoded once: :class:`ImageDataset` holds them as one uint8 array
(N, C, R, R) and hands out float32 batches in [-1, 1]; ``decode_to_dataset`` builds one from
image files (in parallel for big sets) through a ``.npy`` cache under ``$BEGAN_CACHE`` (default
``~/.cache/began_studio``), memory-mapped on later opens.

The cache cannot go stale: an entry's name is a hash of every file's path, size,
``st_mtime_ns`` and ``st_ctime_ns`` (no copy tool can set the last: ``cp -p``, ``rsync -a`` and
``tar x`` keep the mtime, never the ctime), of a zip's members' names, sizes and CRCs, and of the
decode settings. It is bounded: ``$BEGAN_CACHE_MAX_GB`` (default 20; 0 turns the cache off),
the least recently used entries removed first, never one a process has open (each holds a
shared ``flock`` on its entry). An entry is written to a temp file named with the writer's pid,
its space reserved first (``posix_fallocate``: a full disk is a clean ENOSPC, never a memory
map's SIGBUS), then renamed; the temp is removed on any error, on Ctrl-C and on SIGTERM, and a
killed writer's is removed by the next writer. ``began cache list`` / ``began cache clear``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import errno
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch

from .images import load_image

try:
    import fcntl
except ImportError:  # Windows: entries are not locked, so eviction cannot see them in use
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

POOL_MIN_FILES = 2000  # decode with a process pool above this many files
PROGRESS_MIN_FILES = 500  # show a progress bar above this many files
CHUNK = 16  # images a pool worker decodes per task
POLL_S = 0.2  # how often a pool decode looks for a stop request while it waits for results
# Bump when load_image's pixels change for the same file and settings: every entry is redone.
DECODER_VERSION = 1
CACHE_MAX_ENV = "BEGAN_CACHE_MAX_GB"
CACHE_MAX_DEFAULT_GB = 20.0  # CelebA at 64 px is 2.5 GB, at 128 px 10 GB
DISK_MARGIN = 64 * 2**20  # left free on the cache's disk beyond the entry being written
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)
_TEMP = re.compile(r"\.(\d+)\.tmp(\.npy)?$")  # name.PID.tmp.npy (array), name.json.PID.tmp


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


@contextlib.contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """A function that turns True once decoding should stop: the `stopping` block's, or a SIGINT
    or SIGTERM that arrives while the process leaves them to Python's defaults (a notebook, a
    script), so that those too end the decode at the next image and remove its temp file (by
    default SIGTERM kills at once, leaving it). A second Ctrl-C still raises KeyboardInterrupt."""
    caller, got, installed = _STOP.get(), [], {}

    def on_signal(signum: int, _frame: Any) -> None:
        got.append(signum)
        if len(got) > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for sig, default in (
            (signal.SIGINT, signal.default_int_handler),
            (signal.SIGTERM, signal.SIG_DFL),
        ):
            if signal.getsignal(sig) is default:
                installed[sig] = signal.signal(sig, on_signal)
    try:
        yield lambda: bool(got) or (caller is not None and bool(caller()))
    finally:
        for sig, old in installed.items():
            signal.signal(sig, old)


def _stopped(source: str, done: int, n: int) -> DecodingStopped:
    return DecodingStopped(
        f"stopped while decoding {source!r} ({done} of {n} images): nothing was trained or "
        "written, and no partial cache was kept."
    )


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


def _close_zips() -> None:
    while _ZIPS:
        _ZIPS.popitem()[1].close()


def _worker_signals(leaving: Any) -> None:
    """Pool initializer: SIGINT is ignored; SIGTERM ends the worker only once the parent has
    set `leaving` (its own terminate), not when it reached the whole process group. SIGTERM is
    blocked in every thread (from the forkserver on: forkserver_preload) and read here by one
    thread of its own, whatever the others are doing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def read_sigterm() -> None:
        while True:
            signal.sigwait({signal.SIGTERM})
            if leaving.is_set():
                os._exit(1)

    threading.Thread(target=read_sigterm, name="sigterm", daemon=True).start()


def _decode_chunk(jobs: list) -> list[np.ndarray | str]:
    return [_decode_job(j) for j in jobs]


def _results(jobs: list, source: str, stop: Callable[[], bool]):
    """Each job's result, in order; raises DecodingStopped within about POLL_S of `stop()`."""
    from tqdm.auto import tqdm

    n = len(jobs)
    bar = tqdm(total=n, desc=f"decoding {source}", unit="img", disable=n < PROGRESS_MIN_FILES)
    workers = min(os.cpu_count() or 1, 8)
    try:
        if n > POOL_MIN_FILES and workers > 1:
            # Never "fork": torch's thread pools make a forked child deadlock on their locks.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload([f"{__package__}.forkserver_preload"])
            # A Ctrl-C or a SIGTERM sent to the process group reaches the workers (and the
            # forkserver: see forkserver_preload) too. A worker it killed would lose its images,
            # and the pool would wait for them for ever or start others behind our back. So the
            # parent decides: workers ignore both until it sets `leaving`, and leaving the block
            # terminates them.
            leaving = ctx.Event()
            with ctx.Pool(workers, initializer=_worker_signals, initargs=(leaving,)) as pool:
                try:
                    # Chunks by hand: imap's own chunksize gives an iterator without a timeout.
                    chunks = [jobs[i : i + CHUNK] for i in range(0, n, CHUNK)]
                    results = pool.imap(_decode_chunk, chunks)
                    done = 0
                    while done < n:
                        if stop():
                            raise _stopped(source, done, n)
                        try:
                            chunk = results.next(timeout=POLL_S)
                        except multiprocessing.TimeoutError:
                            continue
                        for r in chunk:
                            done += 1
                            bar.update()
                            yield r
                finally:
                    leaving.set()  # before the with-block terminates them
        else:
            for done, j in enumerate(jobs):
                if stop():
                    raise _stopped(source, done, n)
                bar.update()
                yield _decode_job(j)
        if stop():
            raise _stopped(source, n, n)
    finally:
        bar.close()


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
    if path is not None:
        hit = _cache_load(path)
        if hit is not None:
            arr, meta, hold = hit
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


def _memory_error(
    shape: tuple[int, ...], source: str, avail: int | None, mapped: bool = False
) -> DatasetError:
    n, _, res, _ = shape
    have = f"{_size(avail)} is available" if avail is not None else "the allocation failed"
    if mapped:  # the cache's memory map was refused: address space (ulimit -v), not disk
        return DatasetError(
            f"not enough memory to decode {source!r}: mapping the cache file of its {n:,} "
            f"images at {res}x{res} needs {_size(int(np.prod(shape)))} of address space, and "
            f"{have}. Raise the process's memory limit (ulimit -v), use fewer images "
            "(--max-images) or a lower --resolution."
        )
    return DatasetError(
        f"not enough memory to decode {source!r}: its {n:,} images at {res}x{res} need "
        f"{_size(int(np.prod(shape)))} in memory, and {have}. Free memory, use fewer images "
        "(--max-images) or a lower --resolution, or let the decode cache hold them on disk "
        f"(BEGAN_CACHE a writable folder with room, {CACHE_MAX_ENV} above 0)."
    )


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the system's MemAvailable, the
    cgroup's limit less its use (page cache that can be dropped counted as free) and the
    address-space limit (ulimit -v) less the address space in use; None where none is known."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for root, limit_name, usage_name, inactive_name in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
        (
            "/sys/fs/cgroup/memory",
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
    ):
        with contextlib.suppress(OSError, ValueError):
            limit = Path(root, limit_name).read_text().strip()
            if limit != "max" and int(limit) < 2**60:
                used = int(Path(root, usage_name).read_text())
                stat = dict(
                    line.split() for line in Path(root, "memory.stat").read_text().splitlines()
                )
                found.append(max(0, int(limit) - used + int(stat.get(inactive_name, 0))))
                break
    with contextlib.suppress(ImportError, OSError, ValueError, IndexError):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            status = Path("/proc/self/status").read_text()
            vm = int(re.search(r"^VmSize:\s+(\d+)", status, re.M).group(1)) * 1024  # type: ignore[union-attr]
            found.append(max(0, soft - vm))
    return min(found) if found else None


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


# --------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$BEGAN_CACHE``, or ``~/.cache/began_studio``."""
    env = os.environ.get("BEGAN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "began_studio"


def arrays_dir() -> Path:
    """Where the decoded datasets are kept: ``cache_dir() / "arrays"``."""
    return cache_dir() / "arrays"


def cache_limit() -> int:
    """The decode cache's bound in bytes, from ``$BEGAN_CACHE_MAX_GB`` (default 20 GB); 0: off."""
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    if not raw:
        return int(CACHE_MAX_DEFAULT_GB * 1e9)
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not (gb >= 0 and np.isfinite(gb)):
        raise DatasetError(
            f"{CACHE_MAX_ENV}={raw!r} is not a size: give the decode cache's bound in GB, such "
            f"as {CACHE_MAX_DEFAULT_GB:g} (the default), or 0 to decode without a cache."
        )
    return int(gb * 1e9)


def files_fingerprint(jobs: Sequence[tuple[str | None, str]]) -> dict:
    """What the pixels depend on in the files, in one stat each: every file's path, size,
    st_mtime_ns and st_ctime_ns (the ctime changes whenever a file is written or replaced, and
    no copy tool can set it), and for a zip its own stat and its members' names, sizes and
    CRCs.  ``{"count", "digest"}``; 200,000 files take about a second."""
    h = hashlib.blake2b(digest_size=20)
    members: dict[str, dict[str, zipfile.ZipInfo]] = {}
    lines: list[str] = []
    for zip_path, name in jobs:
        if zip_path:
            if zip_path not in members:
                lines.append(_stat_line(zip_path))
                try:
                    with zipfile.ZipFile(zip_path) as zf:
                        members[zip_path] = {m.filename: m for m in zf.infolist()}
                except (OSError, zipfile.BadZipFile):
                    members[zip_path] = {}
            m = members[zip_path].get(name)
            lines.append(f"{name}\0{m.file_size}\0{m.CRC}" if m else f"{name}\0missing")
        else:
            lines.append(_stat_line(name))
        if len(lines) >= 8192:
            h.update("\n".join(lines).encode("utf-8", "surrogateescape"))
            lines.clear()
    h.update("\n".join(lines).encode("utf-8", "surrogateescape"))
    return {"count": len(jobs), "digest": h.hexdigest()}


def _stat_line(path: str) -> str:
    try:
        st, what = os.stat(path), ""
    except OSError:  # a link that leads nowhere: its own stat (the decode skips it)
        try:
            st, what = os.lstat(path), "\0link"
        except OSError:
            return f"{path}\0gone"
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}{what}"


def cache_key(key: dict, jobs: Sequence[tuple[str | None, str]]) -> dict:
    """The caller's key (what the images are made from and the decode settings) with the
    files' fingerprint and the decoder's version (ours and Pillow's)."""
    decoder = {"version": DECODER_VERSION, "pillow": PIL.__version__}
    return key | {"files": files_fingerprint(jobs), "decoder": decoder}


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return arrays_dir() / f"{key.get('kind', 'data')}-{digest[:20]}.npy"


def _hold_entry(path: Path) -> Any:
    """The entry opened with a shared lock (released when the process ends): an entry in use
    is never evicted. None if it was removed in between."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (held for as long as the dataset lives)
    except OSError:
        return None
    if fcntl is None:
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_SH)
        if os.fstat(f.fileno()).st_ino != os.stat(path).st_ino:  # evicted and rewritten
            raise OSError(errno.ENOENT, "replaced")
    except OSError:
        f.close()
        return None
    return f


def _cache_load(path: Path):
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    hold = _hold_entry(path)
    if hold is None:
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arr = np.load(path, mmap_mode="r")
        if meta["labels"] is not None and len(meta["labels"]) != len(arr):
            raise ValueError(f"{len(meta['labels'])} labels for {len(arr)} images")
    except (OSError, ValueError, KeyError) as e:
        hold.close()
        log.warning("ignoring damaged dataset cache %s (%s)", path, e)
        return None
    with contextlib.suppress(OSError):  # its mtime says when it was last used (LRU)
        os.utime(path)
    return arr, meta, hold


def _reserve(
    path: Path, shape: tuple[int, ...], source: str, limit: int
) -> tuple[np.memmap, Path] | None:
    """A memory-mapped temp .npy for the decode, its disk space reserved; None (with a warning)
    when the cache folder is not writable. A full disk is a DatasetError saying what to do."""
    folder, nbytes = path.parent, int(np.prod(shape))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable", str(folder))
    except OSError as e:
        if e.errno not in _DENIED:
            raise
        _not_writable(folder, e)
        return None
    remove_stale_temps()
    if nbytes > limit:
        log.warning(
            "the decoded %s (%s) is larger than the cache's bound (%s=%s GB): it is kept while "
            "in use and removed first when room is needed",
            source,
            _size(nbytes),
            CACHE_MAX_ENV,
            f"{limit / 1e9:g}",
        )
    _quietly_evict(limit, nbytes)
    free = shutil.disk_usage(folder).free
    if free < nbytes + DISK_MARGIN:
        raise _disk_error(folder, shape, source, free)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": shape}
            )
            offset = f.tell()
            f.flush()
            _allocate(f.fileno(), offset + nbytes)
        return np.memmap(tmp, np.uint8, "r+", offset=offset, shape=shape), tmp
    except BaseException as e:  # a second Ctrl-C too: the temp file never outlives this
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if not isinstance(e, OSError):
            raise
        if e.errno in _FULL:
            raise _disk_error(folder, shape, source, shutil.disk_usage(folder).free) from None
        if e.errno == errno.ENOMEM:  # the map needs address space: ulimit -v, or vm limits
            raise _memory_error(shape, source, available_memory(), mapped=True) from None
        if e.errno in _DENIED:
            _not_writable(folder, e)
            return None
        raise


def _allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks, so that writing through a memory map cannot hit a full disk
    (which is SIGBUS, with no message and the temp file left behind)."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
    zeros = bytes(16 * 2**20)  # no fallocate (macOS, some file systems): write the zeros
    at = os.lseek(fd, 0, os.SEEK_END)
    while at < size:
        at += os.write(fd, zeros[: min(len(zeros), size - at)])


def _disk_error(folder: Path, shape: tuple[int, ...], source: str, free: int) -> DatasetError:
    n, _, res, _ = shape
    return DatasetError(
        f"not enough disk space for the dataset cache in {folder}: the {n:,} images of "
        f"{source!r} at {res}x{res} need {_size(int(np.prod(shape)) + DISK_MARGIN)} and "
        f"{_size(free)} is free. Free space on that disk (`began cache clear` removes old "
        "entries), set BEGAN_CACHE to a folder on a disk with room, or set "
        f"{CACHE_MAX_ENV}=0 to decode into memory without a cache."
    )


def _not_writable(folder: Path, e: OSError) -> None:
    warnings.warn(
        f"cannot write the dataset cache in {folder} ({e.strerror or e}): decoding into memory "
        "instead, and again next time. Set BEGAN_CACHE to a writable folder to keep it.",
        stacklevel=4,
    )


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


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


# --------------------------------------------------------------------------- entries


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One decoded dataset in the cache: its .npy (and .json), size, when it was made and last
    used, and what it was made from (its key)."""

    path: Path
    size: int  # bytes of the .npy and its .json
    created: float  # time.time() when written
    used: float  # time.time() when last opened
    key: dict
    images: int | None

    @property
    def name(self) -> str:
        return self.path.stem

    def in_use(self) -> bool:
        """True while a process has the entry open (its shared lock)."""
        if fcntl is None:
            return False
        try:
            with open(self.path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    def made_from(self) -> str:
        """A line: the source, its files and the decode settings."""
        k = self.key
        what = k.get("path") or k.get("name") or "?"
        files = (k.get("files") or {}).get("count", k.get("n"))
        parts = [f"{k.get('kind', '?')} {what}"]
        if files is not None:
            parts.append(f"{files:,} files")
        if k.get("resolution"):
            channels = k.get("channels")
            colour = {1: "grey", 3: "RGB"}.get(int(channels or 0), f"{channels} ch")
            parts.append(f"{k['resolution']}px {colour}")
        if k.get("crop"):
            parts.append("CelebA crop")
        if k.get("max_images"):
            parts.append(f"max {k['max_images']:,} images")
        return ", ".join(parts)


def cache_entries() -> list[CacheEntry]:
    """The decoded datasets in the cache, least recently used first."""
    folder, entries = arrays_dir(), []
    if not folder.is_dir():
        return []
    for npy in folder.glob("*.npy"):
        if _TEMP.search(npy.name):
            continue
        meta_path = npy.with_suffix(".json")
        try:
            st = npy.stat()
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            size = st.st_size + (meta_path.stat().st_size if meta_path.exists() else 0)
        except (OSError, ValueError):
            continue
        created = meta.get("created") or st.st_ctime
        images = meta.get("images") or (len(meta["labels"]) if meta.get("labels") else None)
        entries.append(CacheEntry(npy, size, created, st.st_mtime, meta.get("key", {}), images))
    return sorted(entries, key=lambda e: e.used)


def remove_entry(entry: CacheEntry | Path) -> bool:
    """Remove an entry unless a process has it open; True when it is gone."""
    path = entry.path if isinstance(entry, CacheEntry) else Path(entry)
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            path.with_suffix(".json").unlink()
        return True
    with f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".json").unlink()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return True


def evict(limit: int, incoming: int = 0, keep: Path | None = None) -> list[CacheEntry]:
    """Remove the least recently used entries until they and `incoming` more bytes fit in
    `limit`; never `keep` nor an entry in use. Returns the entries removed."""
    entries = cache_entries()
    total, removed = sum(e.size for e in entries) + incoming, []
    for e in entries:
        if total <= limit:
            break
        if keep is not None and e.path == keep:
            continue
        if remove_entry(e):
            total -= e.size
            removed.append(e)
            log.info("removed the least recently used dataset cache %s (%s)", e.name, _size(e.size))
    return removed


def _quietly_evict(limit: int, incoming: int, keep: Path | None = None) -> None:
    try:
        evict(limit, incoming, keep)
    except OSError as e:  # a read-only shared cache: nothing to remove, nothing lost
        log.debug("could not evict from the dataset cache: %s", e)


def stale_temps() -> list[Path]:
    """Temp files of the cache whose writer (the pid in the name) is no longer running."""
    folder = arrays_dir()
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _TEMP.search(p.name)
        if m and not _pid_alive(int(m.group(1))):
            found.append(p)
    return sorted(found)


def remove_stale_temps() -> list[Path]:
    """Remove what killed writers left (SIGKILL, a power cut); returns what was removed."""
    removed = []
    for p in stale_temps():
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
            log.info("removed %s, left by a decode that was killed", p)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True

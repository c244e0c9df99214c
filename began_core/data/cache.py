"""The decoded-dataset cache: one ``.npy`` (and its ``.json``) per decoded dataset under
``$BEGAN_CACHE/arrays`` (default ``~/.cache/began_studio``), memory-mapped on later opens. It
cannot go stale: an entry's name is a hash of every file's path, size, ``st_mtime_ns`` and
``st_ctime_ns`` (no copy tool can set the last: ``cp -p``, ``rsync -a`` and ``tar x`` keep the
mtime, never the ctime), of a zip's members' names, sizes and CRCs, and of the decode settings.
It is bounded: ``$BEGAN_CACHE_MAX_GB`` (default 20; 0 turns the cache off), the least recently
used entries removed first, never one a process has open (each holds a shared ``flock`` on its
entry). An entry is written to a temp file named with the writer's pid, its space reserved first
(``posix_fallocate``: a full disk is a clean ENOSPC, never a memory map's SIGBUS), then renamed;
the temp is removed on any error, on Ctrl-C and on SIGTERM, and a killed writer's is removed by
the next writer. A disk or memory too small for an entry is one message saying what to do
(``_memory_error`` is also the in-memory decode's). ``began cache list`` / ``began cache
clear``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from ..atomic import write_text
from .errors import DatasetError, _size
from .memory import available_memory

try:
    import fcntl
except ImportError:  # Windows: entries are not locked, so eviction cannot see them in use
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Bump when load_image's pixels change for the same file and settings: every entry is redone.
DECODER_VERSION = 1
CACHE_MAX_ENV = "BEGAN_CACHE_MAX_GB"
CACHE_MAX_DEFAULT_GB = 20.0  # CelebA at 64 px is 2.5 GB, at 128 px 10 GB
DISK_MARGIN = 64 * 2**20  # left free on the cache's disk beyond the entry being written
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)
_TEMP = re.compile(r"\.(\d+)\.tmp(\.npy)?$")  # name.PID.tmp.npy (array), name.json.PID.tmp


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


def _not_writable(folder: Path, e: OSError) -> None:
    warnings.warn(
        f"cannot write the dataset cache in {folder} ({e.strerror or e}): decoding into memory "
        "instead, and again next time. Set BEGAN_CACHE to a writable folder to keep it.",
        stacklevel=4,
    )


def _atomic_write_text(path: Path, text: str) -> None:
    # The temporary name carries the pid, so a dead writer's leftover is recognised and removed.
    write_text(path, text, tmp=path.with_name(f"{path.name}.{os.getpid()}.tmp"))


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

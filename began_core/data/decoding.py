"""Decoding image files into pixels, and stopping it. ``_results`` decodes ``(zip path or
None, file or member, resolution, channels, crop)`` jobs in order, one by one or, above
``POOL_MIN_FILES``, in a process pool (forkserver or spawn, never fork), with a progress bar
above ``PROGRESS_MIN_FILES``; an unreadable file is its error message, not an image. A decode
stops with :class:`DecodingStopped` at the next image (within ``POLL_S`` in a pool) when a
``stopping`` block asks, or on a Ctrl-C or SIGTERM where the process leaves those to Python's
defaults; the pool's workers ignore both until the parent ends them (see forkserver_preload).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import multiprocessing
import os
import signal
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .errors import DatasetError
from .images import load_image

POOL_MIN_FILES = 2000  # decode with a process pool above this many files
PROGRESS_MIN_FILES = 500  # show a progress bar above this many files
CHUNK = 16  # images a pool worker decodes per task
POLL_S = 0.2  # how often a pool decode looks for a stop request while it waits for results

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

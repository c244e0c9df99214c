"""The decoded-dataset cache at real scale: it cannot go stale (a file replaced with its mtime
kept, as by `cp -p`, `rsync -a` or `tar x`; one removed and an older one added; a zip member
rewritten), a full disk or short memory is one clear message with nothing left behind, a
killed writer's temp file is removed by the next one, the cache is bounded (least recently used
first, never an entry in use) and listed and cleared by `began cache`, and Ctrl-C or SIGTERM
stops a decode at once, also one that runs in a process pool.

Every test has its own BEGAN_CACHE: the user's ~/.cache/began_studio is never touched.
"""

import contextlib
import errno
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from began_core.cli.main import main
from began_core.data import cache as decode_cache
from began_core.data import dataset, decoding, sources
from began_core.data.sources import DatasetError, open_dataset

from conftest import ROOT, dead_pid, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private cache, used for every folder however small."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BEGAN_CACHE", str(folder))
    monkeypatch.delenv(decode_cache.CACHE_MAX_ENV, raising=False)
    monkeypatch.setattr(sources, "CACHE_MIN_FILES", 0)
    return folder


def bmp(path: Path, rgb, size=(12, 12)) -> Path:
    """A BMP: every one of a size has the same byte count, so a replacement keeps the size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, "BMP")
    return path


def colours(ds) -> list[int]:
    return sorted(int(v) for v in ds.uint8()[:, 0, 0, 0])


def entries(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "arrays").glob("*")) if cache.exists() else []


def no_decoding(monkeypatch):
    def refuse(job):
        raise AssertionError("decoded")

    monkeypatch.setattr(decoding, "_decode_job", refuse)


# --------------------------------------------------------------------------- never stale


def test_file_replaced_with_its_size_and_mtime_kept_is_decoded_anew(tmp_path):
    folder = tmp_path / "data"
    for i in range(4):
        bmp(folder / f"{i}.bmp", (10 * i, 0, 0))
    first = open_dataset(folder, 8)
    assert colours(first) == [0, 10, 20, 30]
    time.sleep(0.05)  # the kernel's clock for file times is coarse (a jiffy)
    target, before = folder / "2.bmp", (folder / "2.bmp").stat()
    shutil.copy2(bmp(tmp_path / "other.bmp", (200, 0, 0)), target)  # what cp -p does
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = open_dataset(folder, 8)
    assert colours(again) == [0, 10, 30, 200] and again.cache_path != first.cache_path


def test_file_removed_and_an_older_one_added_is_decoded_anew(tmp_path):
    folder = tmp_path / "data"
    for i in range(4):
        bmp(folder / f"{i}.bmp", (10 * i, 0, 0))
    first = open_dataset(folder, 8)
    oldest = min(p.stat().st_mtime_ns for p in folder.iterdir())
    (folder / "3.bmp").unlink()
    old = bmp(folder / "9.bmp", (99, 0, 0))
    os.utime(old, ns=(oldest - 10**9, oldest - 10**9))  # same count, same newest mtime
    again = open_dataset(folder, 8)
    assert colours(again) == [0, 10, 20, 99] and again.cache_path != first.cache_path


def test_zip_member_rewritten_with_the_zip_mtime_kept_is_decoded_anew(tmp_path):
    def zipped(path: Path, red: int) -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            for i in range(3):
                zf.writestr(
                    f"{i}.bmp", bmp(tmp_path / "m" / f"{i}.bmp", (red + i, 0, 0)).read_bytes()
                )
        return path

    path = zipped(tmp_path / "d.zip", 10)
    first = open_dataset(path, 8)
    before = path.stat()
    time.sleep(0.05)
    zipped(path, 50)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    again = open_dataset(path, 8)
    assert colours(again) == [50, 51, 52] and again.cache_path != first.cache_path


def test_unchanged_folder_reuses_its_entry_and_settings_make_their_own(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    for i in range(3):
        bmp(folder / f"{i}.bmp", (10 * i, 0, 0))
    first = open_dataset(folder, 8)
    grey = open_dataset(folder, 8, 1)
    cropped = open_dataset(folder, 8, celeba_crop=True)
    assert len({first.cache_path, grey.cache_path, cropped.cache_path}) == 3
    no_decoding(monkeypatch)
    again = open_dataset(folder, 8)
    assert again.cache_path == first.cache_path and isinstance(again.uint8(), np.memmap)


def test_fingerprint_of_200000_files_is_fast(tmp_path):
    """One stat per file: the key of a CelebA-sized folder costs about a second."""
    files = [str(bmp(tmp_path / f"{i}.bmp", (i, 0, 0))) for i in range(20)]
    jobs = [(None, files[i % 20]) for i in range(200_000)]
    start = time.perf_counter()
    fingerprint = decode_cache.files_fingerprint(jobs)
    # Measured: 200,000 distinct files 2.6-2.9 s on a busy 2-core EPYC (the folder's scan
    # before it, 10.7 s); these repeated ones, in the kernel's cache, take 1-2 s.
    assert time.perf_counter() - start < 10
    assert fingerprint["count"] == 200_000


# --------------------------------------------------------------------------- disk and memory


def assert_full_disk_message(message: str, cache: Path) -> None:
    assert f"not enough disk space for the dataset cache in {cache / 'arrays'}" in message
    assert "need" in message and "is free" in message
    assert "set BEGAN_CACHE to a folder on a disk with room" in message
    assert "BEGAN_CACHE_MAX_GB=0 to decode into memory" in message


def test_full_disk_on_reserving_space_is_one_message_and_leaves_nothing(
    tmp_path, cache, monkeypatch
):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    no_decoding(monkeypatch)  # refused before a single image is decoded
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "data", 8)
    assert_full_disk_message(str(info.value), cache)
    assert entries(cache) == []


def test_too_little_free_space_is_refused_before_decoding(tmp_path, cache, monkeypatch):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))
    monkeypatch.setattr(decode_cache, "DISK_MARGIN", 2**62)  # no disk has that much free
    no_decoding(monkeypatch)
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "data", 8)
    assert_full_disk_message(str(info.value), cache)
    assert entries(cache) == []


def test_cache_turned_off_decodes_into_memory(tmp_path, cache, monkeypatch):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))
    monkeypatch.setenv(decode_cache.CACHE_MAX_ENV, "0")
    ds = open_dataset(tmp_path / "data", 8)
    assert len(ds) == 3 and ds.cache_path is None and entries(cache) == []
    monkeypatch.setenv(decode_cache.CACHE_MAX_ENV, "lots")
    with pytest.raises(DatasetError, match="BEGAN_CACHE_MAX_GB='lots' is not a size"):
        open_dataset(tmp_path / "data", 8)


def test_too_little_memory_for_an_in_memory_decode_is_one_message(tmp_path, monkeypatch):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))
    monkeypatch.setenv(decode_cache.CACHE_MAX_ENV, "0")
    monkeypatch.setattr(dataset, "available_memory", lambda: 100)
    no_decoding(monkeypatch)
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "data", 8)
    message = str(info.value)
    assert "not enough memory to decode" in message and "576 bytes in memory" in message
    assert "100 bytes is available" in message and "--max-images" in message
    assert "writable" not in message.split("Free memory")[0]


def test_memory_map_refused_for_memory_is_a_memory_message_and_leaves_nothing(
    tmp_path, cache, monkeypatch
):
    """Short of address space (ulimit -v) the map fails with ENOMEM: this said 'cannot write
    the dataset cache, set BEGAN_CACHE to a writable folder', then a numpy traceback, and left
    the sparse temp file behind."""
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))

    def no_memory(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(decode_cache.np, "memmap", no_memory)
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "data", 8)
    assert "not enough memory to decode" in str(info.value)
    assert "writable folder" not in str(info.value)
    assert entries(cache) == []


def test_unwritable_cache_folder_decodes_into_memory_with_a_warning(tmp_path, cache, monkeypatch):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and real(p, mode))
    with pytest.warns(UserWarning, match="cannot write the dataset cache in .*Set BEGAN_CACHE"):
        ds = open_dataset(tmp_path / "data", 8)
    assert len(ds) == 3 and ds.cache_path is None
    assert not list((cache / "arrays").glob("*"))
    monkeypatch.setattr(dataset, "available_memory", lambda: 10)  # and memory is checked there
    with pytest.warns(UserWarning, match="cannot write"), pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "data", 8)
    assert "not enough memory to decode" in str(info.value)


def test_error_while_decoding_leaves_no_temp_file(tmp_path, cache, monkeypatch):
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))

    def broken(job):
        raise RuntimeError("a bug in the decoder")

    monkeypatch.setattr(decoding, "_decode_job", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        open_dataset(tmp_path / "data", 8)
    assert entries(cache) == []


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs; skip where this process may not mount one."""
    where = tmp_path / "fs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_real_full_disk_is_a_message_not_sigbus(tmp_path, tmpfs):
    """On a real 256 kB disk, with the free-space check out of the way, the write itself meets
    the full disk: a memory-mapped write died there of SIGBUS (exit 135, no message)."""
    folder = tmp_path / "data"
    for i in range(40):
        bmp(folder / f"{i}.bmp", (i, 0, 0))
    script = (
        "import sys\n"
        "import began_core.data.cache as c, began_core.data.sources as s\n"
        "c.DISK_MARGIN = -2**40\n"  # the check passes: only the reservation can fail
        "s.CACHE_MIN_FILES = 0\n"
        "try:\n"
        f"    s.open_dataset({str(folder)!r}, 64)\n"  # 40 x 12 kB: more than the disk
        "except s.DatasetError as e:\n"
        "    sys.exit(f'error: {e}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "BEGAN_CACHE": str(tmpfs)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert_full_disk_message(done.stderr, tmpfs)
    assert "Traceback" not in done.stderr and entries(tmpfs) == []


# --------------------------------------------------------------------------- temp files


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, cache):
    arrays = cache / "arrays"
    arrays.mkdir(parents=True)
    gone, alive = dead_pid(), os.getppid()
    stale = [arrays / f"folder-abc.{gone}.tmp.npy", arrays / f"folder-abc.json.{gone}.tmp"]
    live = arrays / f"folder-def.{alive}.tmp.npy"
    for p in [*stale, live]:
        p.write_bytes(b"\0" * 1000)
    assert decode_cache.stale_temps() == sorted(stale)
    for i in range(3):
        bmp(tmp_path / "data" / f"{i}.bmp", (i, 0, 0))
    open_dataset(tmp_path / "data", 8)  # a writer clears what killed ones left
    assert not any(p.exists() for p in stale) and live.exists()


# --------------------------------------------------------------------------- bound and CLI


def make_folders(tmp_path: Path, k: int) -> list[Path]:
    folders = []
    for j in range(k):
        for i in range(4):
            bmp(tmp_path / f"d{j}" / f"{i}.bmp", (40 * j + i, 0, 0))
        folders.append(tmp_path / f"d{j}")
    return folders


def test_size_bound_removes_the_least_recently_used_first(tmp_path, cache, monkeypatch):
    a, b, c = make_folders(tmp_path, 3)
    first = open_dataset(a, 8)
    size = decode_cache.cache_entries()[0].size
    monkeypatch.setenv(decode_cache.CACHE_MAX_ENV, f"{2.5 * size / 1e9:.12f}")  # room for two
    path_a = first.cache_path
    del first  # and with it the entry's lock
    gc.collect()
    time.sleep(0.05)
    path_b = open_dataset(b, 8).cache_path
    gc.collect()
    time.sleep(0.05)
    open_dataset(a, 8)  # a used again: b is now the least recently used
    gc.collect()
    time.sleep(0.05)
    path_c = open_dataset(c, 8).cache_path
    gc.collect()
    kept = {str(e.path) for e in decode_cache.cache_entries()}
    assert kept == {path_a, path_c} and not Path(path_b).with_suffix(".json").exists()


def test_size_bound_never_removes_an_entry_in_use(tmp_path, monkeypatch):
    a, b = make_folders(tmp_path, 2)
    held = open_dataset(a, 8)  # held open, as by a training run
    monkeypatch.setenv(decode_cache.CACHE_MAX_ENV, "0.000000001")  # 1 byte
    other = open_dataset(b, 8)
    kept = {str(e.path) for e in decode_cache.cache_entries()}
    assert kept == {held.cache_path, other.cache_path}
    assert np.array_equal(held.uint8()[:, 0, 0, 0], [0, 1, 2, 3])
    del held
    gc.collect()
    open_dataset(b, 8)  # a is free now, and over the bound
    assert {str(e.path) for e in decode_cache.cache_entries()} == {other.cache_path}


def test_cache_list_and_clear(tmp_path, cache, capsys):
    a, b = make_folders(tmp_path, 2)
    held = open_dataset(a, 8)
    free = open_dataset(b, 8, 1)
    name_free = Path(free.cache_path).stem
    del free
    gc.collect()
    (cache / "arrays" / f"folder-x.{dead_pid()}.tmp.npy").write_bytes(b"\0" * 100)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert f"folder {a.resolve()}, 4 files, 8px RGB" in out and "[in use]" in out
    assert f"folder {b.resolve()}, 4 files, 8px grey" in out
    assert "2 entries" in out and "1 temp file (" in out and "bound 20.0 GB" in out
    assert main(["cache", "clear", "no-such-entry"]) == 2
    assert "no cache entry named no-such-entry" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 entry" in out and "removed 1 temp file left" in out
    assert f"kept {Path(held.cache_path).stem}" in out and "has it open" in out
    assert entries(cache) == sorted(
        [Path(held.cache_path).name, Path(held.cache_path).with_suffix(".json").name]
    )
    assert not (cache / "arrays" / f"{name_free}.npy").exists()
    name_held = Path(held.cache_path).stem
    del held
    gc.collect()
    assert main(["cache", "clear", name_held]) == 0
    assert entries(cache) == []
    assert main(["cache", "list"]) == 0
    assert "no decoded datasets" in capsys.readouterr().out


# --------------------------------------------------------------------------- signals


def big_images(folder: Path, k: int) -> Path:
    """k copies of a 1600x1600 PNG: each takes tens of ms to decode and shrink."""
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:1600, 0:1600]
    a = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    Image.fromarray(a).save(folder / "0000.png", compress_level=1)
    for i in range(1, k):
        shutil.copyfile(folder / "0000.png", folder / f"{i:04d}.png")
    return folder


# The CLI with the pool used for any number of files and every folder cached.
POOL_TRAIN = (
    "import sys\n"
    "import began_core.data.decoding as d, began_core.data.sources as s\n"
    "d.POOL_MIN_FILES = 0\n"
    "s.CACHE_MIN_FILES = 0\n"
    "from began_core.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def reading(stream) -> list[bytes]:
    """What the stream says, gathered by a thread as it comes."""
    got: list[bytes] = []

    def read() -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            got.append(chunk)

    threading.Thread(target=read, daemon=True).start()
    return got


def decoded(got: list[bytes]) -> int:
    """The progress bar's latest count of decoded images."""
    counts = re.findall(rb"(\d+)/\d+ \[", b"".join(got))
    return int(counts[-1]) if counts else 0


def pool_decoding(tmp_path: Path, cache: Path, out: Path) -> tuple[subprocess.Popen, list[bytes]]:
    """A `train` in its own session, decoding 600 large images through the pool; returned once
    its workers have decoded some, with what its stderr said so far (and goes on saying)."""
    folder = big_images(tmp_path / "big", 600)
    proc = subprocess.Popen(
        [sys.executable, "-c", POOL_TRAIN, "train", "--out", str(out), "--data", str(folder)],
        cwd=ROOT,
        env={**os.environ, "BEGAN_CACHE": str(cache)},
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    got = reading(proc.stderr)
    try:
        wait_until(lambda: decoded(got) > 0, 180, "the workers to decode")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, got


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_process_group_stops_a_pool_decode(tmp_path, cache, sig):
    """As a terminal's Ctrl-C does, the signal reaches the pool's workers too: one it killed
    lost its images, and the pool waited for them for ever."""
    out = tmp_path / "run"
    proc, got = pool_decoding(tmp_path, cache, out)
    try:
        os.killpg(proc.pid, sig)
        start = time.monotonic()
        proc.wait(timeout=60)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = b"".join(got).decode(errors="replace")
    assert took < 10, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2 and "error: stopped while decoding" in last, err[-2000:]
    assert decoded(got) < 600 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert entries(cache) == [] and not out.exists()


def in_group(pgid: int) -> list[int]:
    """The live processes of a process group (zombies are dead)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path, cache):
    """SIGKILL reaches the parent alone. Workers (and their forkserver) ignore a SIGTERM sent to
    the group; none of them may outlive the parent, waiting for work that will never come."""
    proc, _ = pool_decoding(tmp_path, cache, tmp_path / "run")
    try:
        assert len(in_group(proc.pid)) > 2  # the parent, its forkserver and workers
        proc.kill()
        proc.wait(timeout=10)
        wait_until(lambda: not in_group(proc.pid), 30, "the workers to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# Decodes one image three times through a two-worker pool: it ends before the second worker
# has started, so the pool is terminated while a worker is still importing.
EARLY_END = (
    "import sys\n"
    "import began_core.data.decoding as d, began_core.data.sources as s\n"
    "d.POOL_MIN_FILES = 0\n"
    "d.os.cpu_count = lambda: 2\n"
    "if __name__ == '__main__':\n"
    "    for _ in range(3):\n"
    "        s.open_dataset(sys.argv[1], 4)\n"
    "    print('done')\n"
)


def test_a_pool_ended_while_its_workers_start_does_not_wait_for_them(tmp_path, cache):
    """A worker still starting ignored SIGTERM (its forkserver's setting), so the pool's
    terminate waited on it for ever (CI: a 900 s timeout in a six-image decode)."""
    folder = tmp_path / "one"
    folder.mkdir()
    Image.new("RGB", (8, 8), (9, 99, 199)).save(folder / "a.png")
    r = subprocess.run(
        [sys.executable, "-c", EARLY_END, str(folder)],
        cwd=ROOT,
        env={**os.environ, "BEGAN_CACHE": str(cache), "BEGAN_CACHE_MAX_GB": "0"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr[-2000:]
    assert "Traceback" not in r.stderr


# A script that opens a folder with Python's default signal handling (a notebook, a script).
PLAIN_OPEN = (
    "import sys, time\n"
    "import began_core.data.decoding as d, began_core.data.sources as s\n"
    "s.CACHE_MIN_FILES = 0\n"
    "real = d.load_image\n"
    "d.load_image = lambda *a, **k: (time.sleep(0.01), real(*a, **k))[1]\n"
    "try:\n"
    "    s.open_dataset(sys.argv[1], 8)\n"
    "except d.DecodingStopped as e:\n"
    "    sys.exit(f'stopped: {e}')\n"
    "print('finished')\n"
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_decode_outside_train_and_removes_its_temp(tmp_path, cache, sig):
    """SIGTERM's default kills at once, which left the temp file: while decoding, both signals
    stop at the next image and the temp is removed."""
    folder = tmp_path / "data"
    for i in range(600):
        bmp(folder / f"{i:04d}.bmp", (i % 256, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAIN_OPEN, str(folder)],
        cwd=ROOT,
        env={**os.environ, "BEGAN_CACHE": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: list(cache.rglob("*.tmp.npy")), 120, "decoding to start")
        proc.send_signal(sig)
        start = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - start < 10, err[-2000:]
    assert proc.returncode == 1 and "stopped: stopped while decoding" in err, err[-2000:]
    assert "finished" not in out and entries(cache) == []

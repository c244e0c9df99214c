"""metrics.jsonl as the dashboard reads it: once, then only the bytes appended since.

A trainer appends one JSON line per logged step for hours; a page refreshes every couple of
seconds. Parsing the whole file on every refresh costs what the file costs (45,000 lines:
seconds of CPU and ~64 MB of dicts per parse), so each run's file has a `MetricsLog` that
keeps its byte offset and parses only what was appended:

- a half-written last line (the trainer mid-append) is left for the next read;
- a file that was replaced or shrank (a resume truncates it; an editor rewrites it: another
  inode, a size below the offset, or the bytes before the offset changed) is read again from
  the start;
- garbage lines (not JSON, not an object, no integer step) are skipped, as
  `RunDir.read_metrics` skips them.

Values are kept as numpy arrays per key (8 bytes a number, not a dict per line), and a
`MetricsCache` bounds how many runs' logs stay in memory (least recently read go first). The
Runs table wants only each run's newest record: `last_record` reads it from the file's end.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CHUNK = 4 << 20  # bytes read at a time: the first read of a large file stays bounded
TAIL_CHECK = 64  # bytes before the offset compared on each read: a rewritten file re-reads
TAIL_READ = 64 << 10  # bytes from the end that last_record reads first
INT64 = (-(2**63), 2**63)


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One metrics.jsonl line as a record, or None for garbage (what read_metrics skips)."""
    try:
        record = json.loads(line.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # not JSON, or nested beyond reason
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    if not isinstance(step, int) or not INT64[0] <= step < INT64[1]:
        return None
    return record


class _Growing:
    """A 1-D numpy array grown by appending. A view of its first n items stays valid (and
    unchanged) while it grows, so a snapshot needs no copy."""

    __slots__ = ("data", "n")

    def __init__(self, dtype: type) -> None:
        self.data = np.empty(256, dtype)
        self.n = 0

    def extend(self, values: list) -> None:
        end = self.n + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : end] = values
        self.n = end

    def view(self) -> np.ndarray:
        v = self.data[: self.n]
        v.flags.writeable = False
        return v


class _Column:
    """One key's values and the rows (records) they came from; rows are implicit (0..n-1)
    while the key is in every record, as the losses are."""

    __slots__ = ("rows", "values")

    def __init__(self) -> None:
        self.values = _Growing(np.float64)
        self.rows: _Growing | None = None

    def extend(self, rows: list[int], values: list[float]) -> None:
        if self.rows is None and rows[0] == self.values.n and rows[-1] - rows[0] == len(rows) - 1:
            self.values.extend(values)
            return
        if self.rows is None:
            self.rows = _Growing(np.int64)
            self.rows.extend(list(range(self.values.n)))
        self.rows.extend(rows)
        self.values.extend(values)

    def nbytes(self) -> int:
        return self.values.data.nbytes + (self.rows.data.nbytes if self.rows else 0)


@dataclass(frozen=True)
class Metrics:
    """A run's logged records, as columns: what one page run shows. Immutable: the log goes on
    growing behind it without changing it."""

    step: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    columns: Mapping[str, tuple[np.ndarray | None, np.ndarray]] = field(default_factory=dict)
    texts: Mapping[str, Any] = field(default_factory=dict)  # newest non-number value per key
    last: dict[str, Any] = field(default_factory=dict)  # the newest record, as logged

    def __len__(self) -> int:
        return len(self.step)

    def __contains__(self, key: str) -> bool:
        return key == "step" or key in self.columns

    def column(self, key: str) -> np.ndarray:
        """`key` for every record (float64), NaN where a record did not log it."""
        if key == "step":
            return self.step
        rows, values = self.columns.get(key, (None, np.empty(0)))
        if rows is None and len(values) == len(self.step):
            return values
        out = np.full(len(self.step), np.nan)
        if rows is None:
            out[: len(values)] = values
        else:
            out[rows] = values
        return out

    def records(self, last: int) -> list[dict[str, Any]]:
        """The newest `last` records' numbers, as dicts (what a sentence about now reads)."""
        lo = max(0, len(self.step) - last)
        out: list[dict[str, Any]] = [{"step": int(s)} for s in self.step[lo:]]
        for key, (rows, values) in self.columns.items():
            if rows is None:
                picked = zip(range(lo, len(values)), values[lo:], strict=True)
            else:
                at = int(np.searchsorted(rows, lo))
                picked = zip(rows[at:].tolist(), values[at:], strict=True)
            for row, value in picked:
                out[row - lo][key] = float(value)
        return out

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the records that logged `key`."""
        rows, values = self.columns.get(key, (None, np.empty(0)))
        steps = self.step[: len(values)] if rows is None else self.step[rows]
        return steps, values


class MetricsLog:
    """One run's metrics.jsonl, read incrementally. `read()` is safe from several threads (the
    server runs each browser session in its own)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fsencode(path)
        self.lines_parsed = 0  # every line ever parsed, garbage included: what tests count
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read
        self._seen: tuple[int, int] | None = None  # (size, mtime_ns) at the last read
        self._offset = 0  # just after the last complete line read
        self._tail = b""  # the bytes before the offset, as they were
        self._rows = 0
        self._step = _Growing(np.int64)
        self._columns: dict[str, _Column] = {}
        self._texts: dict[str, Any] = {}
        self._last: dict[str, Any] = {}

    def nbytes(self) -> int:
        """Memory held by the parsed values (what the cache bounds)."""
        return self._step.data.nbytes + sum(c.nbytes() for c in self._columns.values())

    def read(self) -> Metrics:
        """Everything logged so far, parsing only what was appended since the last read."""
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    self._update(f, os.fstat(f.fileno()))
            except FileNotFoundError:
                self._reset()
            except OSError:  # unreadable for now (a permission, a disk): show what was read
                pass
            return self._snapshot()

    def _update(self, f: Any, st: os.stat_result) -> None:
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self._offset:
            self._reset()  # another file, or one cut shorter: from the start
        elif (st.st_size, st.st_mtime_ns) == self._seen:
            return  # unchanged
        elif self._tail:
            f.seek(self._offset - len(self._tail))
            if f.read(len(self._tail)) != self._tail:  # rewritten in place
                self._reset()
        self._identity, self._seen = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns)
        f.seek(self._offset)
        pending = b""
        while chunk := f.read(CHUNK):
            data = pending + chunk
            end = data.rfind(b"\n") + 1
            if end:
                self._parse(data[:end])
                self._offset += end
                self._tail = data[max(0, end - TAIL_CHECK) : end]
            pending = data[end:]  # a partial line waits for its newline

    def _parse(self, data: bytes) -> None:
        steps: list[int] = []
        numbers: dict[str, tuple[list[int], list[float]]] = {}
        last = None
        lines = data.split(b"\n")[:-1]
        self.lines_parsed += len(lines)
        for line in lines:
            record = parse_line(line)
            if record is None:
                continue
            row = self._rows + len(steps)
            steps.append(record["step"])
            for key, value in record.items():
                if key == "step":
                    continue
                if isinstance(value, (int, float)):
                    try:
                        number = float(value)
                    except OverflowError:  # an integer beyond float64
                        number = float("nan")
                    rows, values = numbers.setdefault(key, ([], []))
                    rows.append(row)
                    values.append(number)
                else:
                    self._texts[key] = value
            last = record
        if last is None:
            return
        self._step.extend(steps)
        for key, (rows, values) in numbers.items():
            self._columns.setdefault(key, _Column()).extend(rows, values)
        self._rows += len(steps)
        self._last = last

    def _snapshot(self) -> Metrics:
        columns = {
            key: (c.rows.view() if c.rows else None, c.values.view())
            for key, c in self._columns.items()
        }
        return Metrics(self._step.view(), columns, dict(self._texts), self._last)


def last_record(path: str | os.PathLike, within: int = TAIL_READ) -> dict[str, Any] | None:
    """The newest complete record of a metrics.jsonl, from its last `within` bytes (None if
    they hold none, or there is no file): what a table of many runs needs of each."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - within))
            data = f.read(within)
    except OSError:
        return None
    lines = data.split(b"\n")[:-1]  # the piece after the last newline is not complete
    if size > within:
        lines = lines[1:]  # the first may be the end of a line cut by the seek
    for line in reversed(lines):
        record = parse_line(line)
        if record is not None:
            return record
    return None


class MetricsCache:
    """The logs of the runs a dashboard shows, least recently read evicted first, within
    `max_runs` logs and `max_bytes` of parsed values."""

    def __init__(self, max_runs: int = 32, max_bytes: int = 256 << 20) -> None:
        self.max_runs, self.max_bytes = max_runs, max_bytes
        self._logs: OrderedDict[bytes, MetricsLog] = OrderedDict()
        self._lasts: OrderedDict[bytes, tuple[tuple, dict[str, Any] | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._logs)

    def log(self, path: str | os.PathLike) -> MetricsLog:
        key = os.fsencode(path)
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = MetricsLog(key)
            self._logs.move_to_end(key)
            return log

    def read(self, path: str | os.PathLike) -> Metrics:
        """The run's records, parsed once and then only as they are appended."""
        log = self.log(path)
        metrics = log.read()
        self._evict(keep=log)
        return metrics

    def last(self, path: str | os.PathLike) -> dict[str, Any]:
        """The run's newest record ({} if none), without parsing the whole file: from its log
        if it is held, else from the file's end (remembered until the file changes)."""
        key = os.fsencode(path)
        with self._lock:
            log = self._logs.get(key)
        if log is not None:
            return log.read().last
        try:
            st = os.stat(key)
        except OSError:
            return {}
        seen = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._lasts.get(key)
        if hit is not None and hit[0] == seen:
            record = hit[1]
        else:
            record = last_record(key)
            if record is None and st.st_size > TAIL_READ:  # garbage at the end: read it all
                return self.read(key).last
            with self._lock:
                self._lasts[key] = (seen, record)
                self._lasts.move_to_end(key)
                while len(self._lasts) > 16 * self.max_runs:
                    self._lasts.popitem(last=False)
        return record or {}

    def _evict(self, keep: MetricsLog) -> None:
        with self._lock:
            total = sum(log.nbytes() for log in self._logs.values())
            while len(self._logs) > 1 and (
                len(self._logs) > self.max_runs or total > self.max_bytes
            ):
                key, oldest = next(iter(self._logs.items()))
                if oldest is keep:
                    break
                del self._logs[key]
                total -= oldest.nbytes()

"""`began cache list | clear`: the decoded datasets kept under $BEGAN_CACHE/arrays."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..data import cache as decode_cache
from ..data import errors
from ..data.cache import CacheEntry

DESCRIPTION = """\
A folder or zip of images is decoded once into a .npy file under $BEGAN_CACHE/arrays (default
~/.cache/began_studio/arrays) and memory-mapped by later runs. An entry is made anew whenever a
file of the source is changed, added or removed. The cache is bounded by $BEGAN_CACHE_MAX_GB
(default 20; 0 turns it off): the least recently used entries are removed first, never one a
running process has open.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cache",
        help="list or clear the decoded-dataset cache",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cache_command", required=True)
    sub.add_parser("list", help="the entries: size, age, last use, what each was made from")
    c = sub.add_parser(
        "clear",
        help="remove entries (all, by default) and temp files left by killed decodes; "
        "entries a running process has open are kept",
    )
    c.add_argument("names", nargs="*", metavar="NAME", help="entries to remove (see `list`)")
    c.add_argument(
        "--unused-days",
        type=float,
        metavar="DAYS",
        help="only entries not used for this many days",
    )


def main(args: argparse.Namespace) -> int:
    return cmd_list() if args.cache_command == "list" else cmd_clear(args.names, args.unused_days)


def cmd_list() -> int:
    entries, folder = decode_cache.cache_entries(), decode_cache.arrays_dir()
    limit = decode_cache.cache_limit()
    bound = f"bound {_size(limit)} ({decode_cache.CACHE_MAX_ENV})" if limit else "cache off"
    if not entries:
        print(f"no decoded datasets in {folder} ({bound})")
    else:
        now = time.time()
        print(f"{'NAME':28s} {'SIZE':>9s} {'IMAGES':>8s} {'MADE':>6s} {'USED':>6s}  MADE FROM")
        for e in sorted(entries, key=lambda e: -e.used):
            images = f"{e.images:,}" if e.images is not None else "?"
            flag = "  [in use]" if e.in_use() else ""
            print(
                f"{e.name:28s} {_size(e.size):>9s} {images:>8s} {_age(now - e.created):>6s} "
                f"{_age(now - e.used):>6s}  {e.made_from()}{flag}"
            )
        total = sum(e.size for e in entries)
        print(f"{_count(len(entries), 'entry', 'entries')}, {_size(total)} in {folder}; {bound}")
    stale = decode_cache.stale_temps()
    if stale:
        size = sum(_file_size(p) for p in stale)
        print(
            f"{_count(len(stale), 'temp file')} ({_size(size)}) left by killed decodes: "
            "`began cache clear` removes them"
        )
    return 0


def cmd_clear(names: list[str], unused_days: float | None) -> int:
    entries = decode_cache.cache_entries()
    if names:
        by_name = {e.name: e for e in entries}
        unknown = [n for n in names if n.removesuffix(".npy") not in by_name]
        if unknown:
            print(
                f"error: no cache entry named {', '.join(unknown)}: `began cache list` shows "
                "the names",
                file=sys.stderr,
            )
            return 2
        entries = [by_name[n.removesuffix(".npy")] for n in names]
    if unused_days is not None:
        entries = [e for e in entries if time.time() - e.used >= unused_days * 86400]
    removed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    for e in entries:
        (removed if decode_cache.remove_entry(e) else kept).append(e)
    temps = decode_cache.remove_stale_temps()
    freed = sum(e.size for e in removed)
    where = decode_cache.arrays_dir()
    print(f"removed {_count(len(removed), 'entry', 'entries')} ({_size(freed)}) from {where}")
    if temps:
        print(f"removed {_count(len(temps), 'temp file')} left by killed decodes")
    for e in kept:
        print(f"kept {e.name} ({_size(e.size)}): a running process has it open")
    return 0


def _size(nbytes: int) -> str:
    return errors._size(nbytes)


def _count(k: int, one: str, many: str | None = None) -> str:
    return f"{k:,} {one if k == 1 else many or one + 's'}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, scale in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit}"
    return f"{seconds:.0f} s"


def _file_size(path: Any) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

"""The Python half of scripts/device_window.sh: the stages that are data work rather than
commands (the bench in the window's order, scoring beside the training, the export with its
fallback), packing the results under the output folder's limits, and unpacking them into a
checkout. Run from the repository root as `python3 -m scripts.device_window COMMAND ...`;
the shell script calls it, and `scripts/device_window.sh --help` is the user's way in.

What may come back from a window's output folder: at most 8 files, each at most 16 MiB,
64 MiB in all, no deeper than OUT/a/b/file, names of letters, digits, '.', '_' and '-'. So
the results travel as a few archives (one for the bench, tests and logs, one per gamma run
with its export, metrics, sample grids and, where it fits, its latest full checkpoint), an
archive over 16 MiB split into numbered parts, with manifest.json and summary.md beside them.
What did not fit is listed in the manifest with the reason, and `--rest OUT2` packs it into a
second output folder.

Only the standard library is imported at the top: `steps` and `record` are called every few
seconds by the shell script and must start in milliseconds.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.tables import target_lines  # the standard library only, like this script

ROOT = Path(__file__).resolve().parents[1]
GAMMAS = ("0.3", "0.5", "0.7")
MiB = 1 << 20
MAX_FILES, MAX_FILE, MAX_TOTAL, MAX_DEPTH = 8, 16 * MiB, 64 * MiB, 3  # OUT/a/b/file: 3 parts
NAME = re.compile(r"[A-Za-z0-9._-]+")
FORMAT = 1  # of manifest.json
TEXT = (".json", ".jsonl", ".md", ".txt", ".log", ".xml")
SIDE = 512 * 1024  # room kept for manifest.json and summary.md, written last

# The window's bench order: the two targets (64x64, n=64, batch 16 and 64) first, so
# that a bench cut short by its time limit still has them; bench.py writes each row as it goes.
WINDOW_GRID = {"resolution": [64, 32, 128], "n": [64, 32, 128], "batch": [16, 64]}


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path, default=None):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def write_json(path: Path, data) -> None:
    """Whole or not at all: a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- limits


def check_limits(out: Path) -> list[str]:
    """Every way the folder breaks the output folder's rules, as sentences (empty: none)."""
    problems, files, total = [], 0, 0
    for folder, dirs, names in os.walk(out, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(folder) / name
            rel = path.relative_to(out)
            if not NAME.fullmatch(name):
                problems.append(f"{rel}: a name of other than letters, digits, '.', '_', '-'")
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                problems.append(f"{rel}: not a plain file or folder")
                continue
            if path.is_dir():
                continue
            files, size = files + 1, path.stat().st_size
            total += size
            if len(rel.parts) > MAX_DEPTH:
                problems.append(f"{rel}: deeper than OUT/a/b/file")
            if size > MAX_FILE:
                problems.append(f"{rel}: {size / MiB:.1f} MiB, over {MAX_FILE // MiB} MiB")
    if files > MAX_FILES:
        problems.append(f"{files} files, over {MAX_FILES}")
    if total > MAX_TOTAL:
        problems.append(f"{total / MiB:.1f} MiB in all, over {MAX_TOTAL // MiB} MiB")
    return problems


# ---------------------------------------------------------------------- what to pack


@dataclass
class Item:
    """Files that travel together (a checkpoint is useless in halves), in one archive."""

    archive: str
    label: str
    members: list[tuple[Path, str]]  # (file here, name in the archive)
    priority: int  # 0 must come back; 1 the resume checkpoints; 2 older sample grids
    estimate: int = 0

    def __post_init__(self) -> None:
        self.estimate = sum(_estimate(src, arc) for src, arc in self.members)


def _estimate(src: Path, arc: str) -> int:
    """An upper bound of what the file adds to a .tar.gz: header and padding, and gzip's
    output (text measured, binary taken as it is: weights and PNGs barely compress)."""
    size = src.stat().st_size
    header = 512 + (1536 if len(arc) > 99 else 0)
    body = 512 * math.ceil(size / 512)
    if src.suffix in TEXT and size < 8 * MiB:
        packed = len(zlib.compress(src.read_bytes(), 6)) + 64
    else:
        packed = int(body * 1.002) + 64
    return header + min(body + 64, packed) + 64


def _tree(folder: Path, arc: str) -> list[tuple[Path, str]]:
    return [
        (p, f"{arc}/{p.relative_to(folder).as_posix()}")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    ]


def _run_items(runs: Path, work: Path, checkpoints: bool) -> list[Item]:
    """Per gamma run: its export, its record (config, metrics, status, log, the newest
    sample grid of each generator) that must come back; its latest full checkpoint so that
    training resumes; its other sample grids, newest first."""
    items: list[Item] = []
    for gamma in GAMMAS:
        run, archive = runs / f"gamma{gamma}", f"gamma{gamma}.tar.gz"
        members: list[tuple[Path, str]] = []
        for where in ("pretrained", "exports"):
            for folder in sorted((work / where).glob(f"*-gamma{gamma}")):
                members += _tree(folder, f"{where}/{folder.name}")
        for name in ("config.json", "metrics.jsonl", "status.json"):
            if (run / name).is_file():
                members.append((run / name, f"runs/gamma{gamma}/{name}"))
        if (runs / f"gamma{gamma}.log").is_file():
            members.append((runs / f"gamma{gamma}.log", f"runs/gamma{gamma}.log"))
        grids = sorted(
            (p for p in (run / "samples").rglob("step_*.png") if p.is_file()),
            key=lambda p: (p.name, str(p)),
            reverse=True,
        )
        newest = {}
        for p in grids:
            newest.setdefault(p.parent, p)
        for p in newest.values():
            members.append((p, f"runs/gamma{gamma}/{p.relative_to(run).as_posix()}"))
        if members:
            items.append(Item(archive, f"gamma {gamma}: export and record", members, 0))
        latest = _latest_checkpoint(run)
        if checkpoints and latest is not None:
            arc = f"runs/gamma{gamma}/checkpoints"
            ck = _tree(latest, f"{arc}/{latest.name}")
            pointer = run / "checkpoints" / "latest.json"
            if pointer.is_file():
                ck.append((pointer, f"{arc}/latest.json"))
            items.append(Item(archive, f"gamma {gamma}: checkpoint {latest.name}", ck, 1))
        for p in grids:
            if p not in newest.values():
                rel = p.relative_to(run).as_posix()
                items.append(
                    Item(archive, f"gamma {gamma}: {rel}", [(p, f"runs/gamma{gamma}/{rel}")], 2)
                )
    return items


def _latest_checkpoint(run: Path) -> Path | None:
    pointer = read_json(run / "checkpoints" / "latest.json", {}) or {}
    named = run / "checkpoints" / str(pointer.get("path", ""))
    if pointer.get("path") and named.is_dir():
        return named
    found = sorted(p for p in (run / "checkpoints").glob("step_*") if p.is_dir())
    return found[-1] if found else None


def _window_item(work: Path, runs: Path, out: Path) -> Item:
    """The bench, the profile, the tests, the environment, the scores and every stage's log."""
    members: list[tuple[Path, str]] = []
    bench = work / "bench"
    if bench.is_dir():
        members += [(p, f"bench/results/{p.name}") for p in sorted(bench.iterdir()) if p.is_file()]
    scores = runs / "scores-64.json"
    if scores.is_file():
        members.append((scores, "runs/scores-64.json"))
        # docs/scores-64.json says how the shipped generators' step was chosen: it is replaced
        # only together with them, when this window's export is to ship (pretrained/)
        if (read_json(work / "export.json") or {}).get("selected"):
            members.append((scores, "docs/scores-64.json"))
    for name in ("env.txt", "tests.xml", "export.json", "stages.jsonl", "train-start.json"):
        if (work / name).is_file():
            members.append((work / name, f"window/{name}"))
    if (work / "logs").is_dir():
        members += _tree(work / "logs", "window/logs")
    if (out / "window.log").is_file():
        members.append((out / "window.log", "window/window.log"))
    return Item("window.tar.gz", "bench, profile, tests, scores, logs", members, 0)


# ---------------------------------------------------------------------- packing


@dataclass
class Plan:
    kept: list[Item] = field(default_factory=list)
    left: list[dict] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.kept:
            out[item.archive] = out.get(item.archive, 10240 + 64) + item.estimate
        return out


def _fits(sizes: dict[str, int], side_files: int) -> str | None:
    """Why archives of these (estimated) sizes would break the limits, or None."""
    files = side_files + sum(math.ceil(s / MAX_FILE) for s in sizes.values())
    total = SIDE + sum(sizes.values())
    if files > MAX_FILES:
        return f"it would make {files} files, over {MAX_FILES}"
    if total > MAX_TOTAL:
        return f"it would make {total / MiB:.1f} MiB in all, over {MAX_TOTAL // MiB} MiB"
    return None


def plan(items: list[Item], side_files: int) -> Plan:
    """Greedy by priority (and within one, in order): each item is kept if everything kept
    so far and it still fit, else left behind with the reason."""
    p = Plan()
    for item in sorted(items, key=lambda i: i.priority):
        sizes = p.sizes()
        sizes[item.archive] = sizes.get(item.archive, 10240 + 64) + item.estimate
        why = _fits(sizes, side_files)
        if why is None:
            p.kept.append(item)
        else:
            p.left.append(
                {
                    "label": item.label,
                    "archive": item.archive,
                    "bytes": item.estimate,
                    "priority": item.priority,
                    "why": f"did not fit: {why}",
                    "members": [[str(src), arc] for src, arc in item.members],
                }
            )
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def build(p: Plan, staging: Path) -> dict[str, dict]:
    """Write each archive into `staging`, split into numbered parts where over 16 MiB."""
    archives: dict[str, dict] = {}
    by_archive: dict[str, list[Item]] = {}
    for item in p.kept:
        by_archive.setdefault(item.archive, []).append(item)
    for name, items in by_archive.items():
        path = staging / name
        with tarfile.open(path, "w:gz", compresslevel=6) as tar:
            for item in items:
                for src, arc in item.members:
                    tar.add(src, arcname=arc, recursive=False, filter=_reset)
        size = path.stat().st_size
        parts = []
        if size <= MAX_FILE:
            parts.append(name)
        else:
            with open(path, "rb") as f:
                for i in range(1, math.ceil(size / MAX_FILE) + 1):
                    part = staging / f"{name}.{i}"
                    part.write_bytes(f.read(MAX_FILE))
                    parts.append(part.name)
            path.unlink()
        archives[name] = {
            "parts": [
                {"name": n, "bytes": (staging / n).stat().st_size, "sha256": _sha256(staging / n)}
                for n in parts
            ],
            "bytes": size,
            "items": [i.label for i in items],
            "members": [arc for i in items for _, arc in i.members],
        }
    return archives


def _status(run: Path) -> dict:
    return read_json(run / "status.json", {}) or {}


def _training(runs: Path, work: Path, archives: dict[str, dict]) -> dict:
    start = read_json(work / "train-start.json", {}) or {}
    out = {}
    for gamma in GAMMAS:
        run = runs / f"gamma{gamma}"
        if not (run / "config.json").is_file():
            continue
        status, members = _status(run), archives.get(f"gamma{gamma}.tar.gz", {}).get("members", [])
        metrics = status.get("metrics") or {}
        kept = sorted(
            {m.split("/")[3] for m in members if m.startswith(f"runs/gamma{gamma}/checkpoints/s")}
        )
        out[f"gamma{gamma}"] = {
            "state": status.get("state", "unknown"),
            "step_at_start": start.get(f"gamma{gamma}", 0),
            "step": status.get("step"),
            "steps_per_s": metrics.get("steps_per_s"),
            "checkpoint_packed": kept[-1] if kept else None,
        }
    return out


def pack(
    out: Path, work: Path, runs: Path, *, final: bool, dry_run: bool, rest: bool = False
) -> int:
    """(Re)build the output folder from the window's work folder. Not final: everything but
    the checkpoints, beside the live window.log (partial results, should the window be cut
    short). Final: the checkpoints where they fit, manifest.json and summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    if rest:
        left = read_json(work / "left.json", [])
        if not left:
            print("nothing was left behind by the last window: no second folder is needed.")
            return 0
        items = [
            Item(
                d["archive"]
                if "-rest." in d["archive"]
                else d["archive"].replace(".tar.gz", "-rest.tar.gz"),
                d["label"],
                [(Path(s), a) for s, a in d["members"] if Path(s).is_file()],
                d["priority"],
            )
            for d in left
        ]
        items = [i for i in items if i.members]
        side = 2
    else:
        items = [_window_item(work, runs, out), *_run_items(runs, work, checkpoints=final)]
        side = 2  # manifest.json + summary.md (final) or window.log (not final)
    items = [i for i in items if i.members]
    p = plan(items, side)
    staging = Path(tempfile.mkdtemp(prefix="pack-", dir=work))
    try:
        archives = build(p, staging)
        # The estimates are upper bounds; should one have been wrong, drop the last kept
        # optional item and build again rather than hand back a folder over the limits.
        while True:
            sizes = {n: sum(x["bytes"] for x in a["parts"]) for n, a in archives.items()}
            files = side + sum(len(a["parts"]) for a in archives.values())
            total = SIDE + sum(sizes.values())
            optional = [i for i in p.kept if i.priority > 0]
            if (files <= MAX_FILES and total <= MAX_TOTAL) or not optional:
                break
            drop = optional[-1]
            p.kept.remove(drop)
            p.left.append(
                {
                    "label": drop.label,
                    "archive": drop.archive,
                    "bytes": drop.estimate,
                    "priority": drop.priority,
                    "why": "did not fit once packed",
                    "members": [[str(s), a] for s, a in drop.members],
                }
            )
            shutil.rmtree(staging)
            staging.mkdir()
            archives = build(p, staging)

        manifest = {
            "format": FORMAT,
            "kind": "rest" if rest else "window",
            "complete": final or rest,
            "dry_run": dry_run,
            "packed": now_iso(),
            "window": read_json(work / "window.json", {}),
            "stages": _stages(work),
            "export": read_json(work / "export.json", None),
            "training": _training(runs, work, archives) if not rest else {},
            "archives": archives,
            "left_behind": [{k: v for k, v in d.items() if k != "members"} for d in p.left],
            "unpack": "scripts/device_window.sh --unpack DIR",
        }
        ours = {part["name"] for a in archives.values() for part in a["parts"]}
        ours |= {"manifest.json"} | ({"summary.md"} if final or rest else {"window.log"})
        if final and not rest:
            # window.log went into window.tar.gz: the folder keeps only what is listed
            (out / "window.log").unlink(missing_ok=True)
        for name in sorted(ours - {"manifest.json", "summary.md", "window.log"}):
            _place(staging / name, out / name)
        for old in out.iterdir():  # earlier packs' parts that this one no longer has
            if old.is_file() and old.name not in ours:
                old.unlink()
        summary = summarise(manifest, work)
        if final or rest:
            (out / ".summary.md.tmp").write_text(summary, encoding="utf-8")
            os.replace(out / ".summary.md.tmp", out / "summary.md")
        write_json(out / "manifest.json", manifest)
        write_json(work / "left.json", p.left)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    problems = check_limits(out)
    if problems:
        print("the output folder breaks its limits: " + "; ".join(problems), file=sys.stderr)
        return 1
    if final or rest:
        print(summary)
    return 0


def _place(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _stages(work: Path) -> list[dict]:
    stages = []
    path = work / "stages.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                stages.append(json.loads(line))
            except ValueError:
                continue
    return stages


# ---------------------------------------------------------------------- summary


def summarise(m: dict, work: Path) -> str:
    w = m.get("window") or {}
    lines = [
        f"# GPU window results{' (a dry run: toy sizes on the CPU, nothing measured)' if m['dry_run'] else ''}",
        "",
        f"Packed {m['packed']}; {w.get('hardware', 'hardware unknown')}; budget "
        f"{w.get('budget_s', '?')} s.",
        "",
    ]
    if m["stages"]:
        lines += ["| stage | result | seconds | limit | note |", "| --- | --- | --- | --- | --- |"]
        for s in m["stages"]:
            lines.append(
                f"| {s.get('stage')} | {s.get('status')} | {s.get('seconds')} | "
                f"{s.get('limit')} | {s.get('note', '')} |"
            )
        lines.append("")
    lines += _bench_lines(work)
    if m.get("training"):
        lines += [
            "| run | state | step at start | step reached | steps/s | resumable checkpoint packed |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, t in m["training"].items():
            rate = f"{t['steps_per_s']:.1f}" if isinstance(t.get("steps_per_s"), float) else ""
            lines.append(
                f"| {name} | {t['state']} | {t['step_at_start']} | {t['step']} | {rate} | "
                f"{t['checkpoint_packed'] or 'no'} |"
            )
        lines.append("")
    e = m.get("export")
    if e:
        lines += [
            f"Export: step {e.get('step')}, "
            + (
                "chosen by `export_pretrained.py --select` (all three beat the shipped ones)"
                if e.get("selected")
                else f"not eligible to ship ({e.get('why')}); exported for inspection under exports/"
            ),
            "",
        ]
    lines += ["| file | MiB | holds |", "| --- | --- | --- |"]
    for a in m["archives"].values():
        holds = [i.split(": ", 1)[-1] for i in a["items"] if "samples/" not in i]
        grids = sum("samples/" in i for i in a["items"])
        holds += [f"{grids} older sample grids"] if grids else []
        for part in a["parts"]:
            lines.append(f"| {part['name']} | {part['bytes'] / MiB:.2f} | {'; '.join(holds)} |")
    lines += ["| manifest.json | | what is where, checksums, stage results |"]
    if m["left_behind"]:
        lines += ["", "Left behind (the output folder's limits):", ""]
        for d in m["left_behind"]:
            lines.append(f"- {d['label']} ({d['bytes'] / MiB:.1f} MiB): {d['why']}")
        lines += [
            "",
            "On the same machine, `scripts/device_window.sh --rest OUT2` packs these into a "
            "second, empty output folder.",
        ]
    lines += [
        "",
        "Unpack into the checkout (refuses to overwrite a file that differs, and says which; "
        "`--force` overwrites):",
        "",
        "    scripts/device_window.sh --unpack DIR",
        "",
        "By hand: `cat NAME.tar.gz.1 NAME.tar.gz.2 > NAME.tar.gz` where an archive was split, "
        "then `tar xzf NAME.tar.gz`.",
        "",
    ]
    return "\n".join(lines)


def _bench_lines(work: Path) -> list[str]:
    """The bench's rows and targets as bench.py wrote them (its own words and numbers)."""
    lines = []
    for path in sorted((work / "bench").glob("*.json")):
        result = read_json(path)
        if not isinstance(result, dict) or "rows" not in result:
            continue
        done = [r for r in result["rows"] if "skipped" not in r]
        lines.append(
            f"Bench ({path.name}, {result.get('hardware')}): {len(done)} configurations "
            f"measured{' (a dry run)' if result.get('dry_run') else ''}."
        )
        lines += [f"- {line}" for line in target_lines(result)]
    tests = work / "tests.xml"
    if tests.is_file():
        import xml.etree.ElementTree as ET

        try:
            root = ET.parse(tests).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            c = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            lines.append(
                f"CUDA tests: {c['tests']} collected, {c['failures']} failed, {c['errors']} "
                f"errors, {c['skipped']} skipped."
            )
        except (ET.ParseError, AttributeError, ValueError):
            lines.append("CUDA tests: their report did not parse (see window/logs/tests.log).")
    return [*lines, ""] if lines else []


# ---------------------------------------------------------------------- unpack


def unpack(src: Path, into: Path, runs_into: Path | None, force: bool) -> int:
    manifest = read_json(src / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SystemExit(
            f"error: {src} holds no window manifest.json (format {FORMAT}); give the output "
            "folder a window (or `--rest`) wrote."
        )
    into = into.resolve()
    if manifest.get("dry_run") and into == ROOT.resolve():
        raise SystemExit(
            f"error: {src} holds a dry run's results (toy sizes on the CPU), not results to "
            "keep in this checkout; give --into DIR to unpack them elsewhere."
        )
    named = str((manifest.get("window") or {}).get("runs") or "runs/window64")
    if Path(named).is_absolute() or ".." in Path(named).parts:
        named = "runs/window64"
    runs_into = (runs_into or into / named).resolve()
    stamp = re.sub(r"[^0-9A-Za-z]", "", str((manifest.get("window") or {}).get("started", "")))
    targets: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, archive in manifest["archives"].items():
            whole = Path(tmp) / name
            with open(whole, "wb") as f:
                for part in archive["parts"]:
                    path = src / part["name"]
                    if not path.is_file():
                        raise SystemExit(
                            f"error: {path} is missing: the output folder came back without "
                            f"part {part['name']} of {name}; nothing was unpacked."
                        )
                    if _sha256(path) != part["sha256"]:
                        raise SystemExit(
                            f"error: {path} differs from the manifest's checksum (damaged or "
                            "from another window); nothing was unpacked."
                        )
                    f.write(path.read_bytes())
            with tarfile.open(whole, "r:gz") as tar:
                for member in tar.getmembers():
                    if not member.isfile():
                        continue
                    parts = Path(member.name).parts
                    if member.name.startswith("/") or ".." in parts:
                        raise SystemExit(f"error: {name} names {member.name!r}; not unpacked.")
                    dest = _destination(parts, into, runs_into, stamp or "window")
                    data = tar.extractfile(member)
                    targets[dest] = data.read() if data else b""
    exported = manifest.get("export") or {}
    conflicts = [
        p
        for p, data in targets.items()
        if p.exists() and (not p.is_file() or p.read_bytes() != data)
    ]
    if conflicts and not force:
        shown = "\n  ".join(str(p) for p in sorted(conflicts))
        print(
            f"error: {len(conflicts)} file(s) exist with other contents:\n  {shown}\n"
            "nothing was written; move them away, or give --force to overwrite them.",
            file=sys.stderr,
        )
        return 1
    same = {p for p, data in targets.items() if p.is_file() and p.read_bytes() == data}
    for path, data in sorted(targets.items()):
        if path in same:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.unpack{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    placed = sorted({_top(p, into, runs_into) for p in targets})
    print(
        f"unpacked {len(targets) - len(same)} files from {src}"
        + (f" ({len(same)} were already there, unchanged)" if same else "")
        + ", into:"
    )
    for where in placed:
        print(f"  {where}")
    if exported and not exported.get("selected") and manifest.get("kind") == "window":
        print(
            f"the exports are not eligible to ship ({exported.get('why')}): they are in "
            f"{runs_into / 'exports'}, not in pretrained/."
        )
    for d in manifest.get("left_behind", []):
        print(f"not in this folder: {d['label']} ({d['why']})")
    return 0


def _destination(parts: tuple[str, ...], into: Path, runs_into: Path, stamp: str) -> Path:
    head, rest = parts[0], parts[1:]
    if head in ("pretrained", "docs") or parts[:2] == ("bench", "results"):
        return into.joinpath(*parts)
    if head == "runs":
        return runs_into.joinpath(*rest)
    if head == "exports":
        return runs_into.joinpath("exports", *rest)
    if head == "window":
        return runs_into.joinpath("windows", stamp, *rest)
    raise SystemExit(f"error: an archive names {'/'.join(parts)!r}, which has no place here.")


def _top(path: Path, into: Path, runs_into: Path) -> str:
    for base in (runs_into, into):
        try:
            rel = path.relative_to(base)
        except ValueError:
            continue
        keep = 2 if rel.parts[0] in ("bench", "windows", "exports", "pretrained") else 1
        return str(base.joinpath(*rel.parts[:keep]))
    return str(path)


# ---------------------------------------------------------------------- stages


def cmd_bench(rest: list[str]) -> int:
    """`python -m bench.bench` as it is, with the window's grid order (the targets first) and its
    results written whole (temp file, rename): the window's time limit ends the bench with
    SIGTERM, which must not leave half a JSON file behind."""
    import importlib

    bench = importlib.import_module("bench.bench")
    bench.CUDA_GRID = WINDOW_GRID

    def write_results(stem: Path, result: dict, table: str) -> None:
        write_json(stem.with_suffix(".json"), result)
        tmp = stem.with_name(f".{stem.name}.md.tmp")
        tmp.write_text(table, encoding="utf-8")
        os.replace(tmp, stem.with_suffix(".md"))

    bench.write_results = write_results
    sys.argv = ["bench.bench", *rest]
    return bench.main()


def cmd_env() -> int:
    """What the window ran on: the GPU, torch, CUDA and cuDNN, the packages present."""
    import importlib.metadata as md
    import platform

    def run(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
            return (done.stdout + done.stderr).strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{command[0]}: not available ({e})"

    print("== date", now_iso(), sep="\n")
    print("== machine", platform.platform(), f"{os.cpu_count()} CPUs", sep="\n")
    print(run(["sh", "-c", "free -g; df -h ."]))
    print("== nvidia-smi", run(["nvidia-smi"]), sep="\n")
    print("== python", sys.version.split()[0], sep="\n")
    import torch

    print(
        "torch",
        torch.__version__,
        "cuda",
        torch.version.cuda,
        "available",
        torch.cuda.is_available(),
    )
    if torch.cuda.is_available():
        print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
        print("cudnn", torch.backends.cudnn.version())
    names = ("numpy", "pillow", "safetensors", "huggingface-hub", "tqdm", "pytest")
    for name in (*names, "pytest-timeout", "psutil"):
        try:
            print(name, md.version(name))
        except md.PackageNotFoundError:
            print(name, "not installed")
    try:
        import began_core

        print("began_core from", Path(began_core.__file__).parent)
    except Exception as e:  # the report says so; the stages will fail on their own
        print("began_core does not import:", e)
    print("== checkout", run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]), sep="\n")
    return 0


def cmd_steps(runs: Path) -> int:
    """The lowest step any gamma run has reached (status.json), -1 where one has none yet."""
    steps = []
    for gamma in GAMMAS:
        step = _status(runs / f"gamma{gamma}").get("step")
        steps.append(step if isinstance(step, int) else -1)
    print(min(steps))
    return 0


def cmd_record(work: Path, stage: str, status: str, seconds: int, limit: int, note: str) -> int:
    with open(work / "stages.jsonl", "a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {"stage": stage, "status": status, "seconds": seconds, "limit": limit, "note": note}
            )
            + "\n"
        )
    return 0


def cmd_snapshot(runs: Path, out: Path) -> int:
    """Each run's step before training, for the summary's 'steps this window'."""
    write_json(
        out,
        {
            f"gamma{g}": (_status(runs / f"gamma{g}").get("step") or 0)
            for g in GAMMAS
            if (runs / f"gamma{g}" / "config.json").is_file()
        },
    )
    return 0


class _Stopped(Exception):
    pass


def cmd_score(args: argparse.Namespace) -> int:
    """score_runs.py, one process per gamma run side by side (scoring is CPU work, and the
    three processes use the cores better than one), each on its own copy of the results
    file; their rows are merged into the one file after every pass. With --until-file, passes
    repeat (new checkpoints appear as training goes on) until that file exists. SIGTERM ends
    the pass at once: the rows of a process cut short mid-write are lost, the file is not."""
    runs, target = args.runs.resolve(), args.json.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="score-", dir=args.work))
    children: list[subprocess.Popen] = []
    deadline = time.monotonic() + args.seconds

    def stop(_signum, _frame):
        # once: a second signal while the children are being ended must not skip the merge
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = max(1, (os.cpu_count() or 2) - args.busy_cores) // len(GAMMAS) or 1
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    try:
        while True:
            passed = _score_pass(runs, target, scratch, args, env, children, deadline)
            if args.until_file is None or args.until_file.exists():
                break
            if time.monotonic() > deadline:
                break
            for _ in range(args.pause):
                if args.until_file.exists() or time.monotonic() > deadline:
                    break
                time.sleep(1)
            del passed
    except _Stopped:
        print("scoring stopped: the rows scored so far are kept", file=sys.stderr)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        _merge(target, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _unscored(runs: Path, results: dict, every: int, until: int) -> bool:
    """Whether a checkpoint at a multiple of `every` has no row yet (no torch needed)."""
    done = {(r.get("run"), r.get("step")) for r in results.get("rows", [])}
    for gamma in GAMMAS:
        for path in (runs / f"gamma{gamma}" / "checkpoints").glob("step_*"):
            m = re.fullmatch(r"step_(\d+)", path.name)
            step = int(m.group(1)) if m else -1
            if 0 <= step <= until and step % every == 0 and (f"gamma{gamma}", step) not in done:
                return True
    return False


def _score_pass(runs, target, scratch, args, env, children, deadline) -> bool:
    """One pass of the three processes; merged into `target` when they end. The shipped
    generators' scores (the reference) are computed first, once, by a process given no runs."""
    results = read_json(target, {}) or {}
    children.clear()
    if not _unscored(runs, results, args.every, args.until):
        return False
    if not results.get("reference"):
        write_json(scratch / "gamma-reference.json", results)
        command = [sys.executable, "-m", "scripts.score_runs", str(scratch / "none"), "--n"]
        command += [str(args.n), "--json", str(scratch / "gamma-reference.json")]
        children.append(subprocess.Popen(command, cwd=ROOT, env=env))
        _wait(children, deadline)
        _merge(target, scratch)
        results = read_json(target, {}) or {}
        children.clear()
    for gamma in GAMMAS:
        run = runs / f"gamma{gamma}"
        if not (run / "config.json").is_file():
            continue
        folder = scratch / f"gamma{gamma}"
        folder.mkdir(exist_ok=True)
        link = folder / f"gamma{gamma}"
        if not link.exists():
            link.symlink_to(run, target_is_directory=True)
        own = {
            "rows": [r for r in results.get("rows", []) if r.get("run") == f"gamma{gamma}"],
            "reference": results.get("reference", {}),
        }
        write_json(scratch / f"gamma{gamma}.json", own)
        command = [sys.executable, "-m", "scripts.score_runs", str(folder)]
        command += ["--every", str(args.every), "--until", str(args.until), "--n", str(args.n)]
        command += ["--json", str(scratch / f"gamma{gamma}.json")]
        children.append(subprocess.Popen(command, cwd=ROOT, env=env))
    _wait(children, deadline)
    _merge(target, scratch)
    return True


def _wait(children: list[subprocess.Popen], deadline: float) -> None:
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print("scoring: out of time, stopping this pass", file=sys.stderr)
            raise _Stopped from None


def _merge(target: Path, scratch: Path) -> None:
    """The rows of every per-gamma file that parses, added to `target` (written whole)."""
    results = read_json(target, {}) or {}
    rows, reference = results.setdefault("rows", []), results.setdefault("reference", {})
    seen = {(r.get("run"), r.get("step"), r.get("generator")) for r in rows}
    for path in sorted(scratch.glob("gamma*.json")):
        part = read_json(path)
        if not isinstance(part, dict):
            print(f"scoring: {path.name} was cut short mid-write; its new rows are lost")
            continue
        for key, value in part.get("reference", {}).items():
            reference.setdefault(key, value)
        for r in part.get("rows", []):
            key = (r.get("run"), r.get("step"), r.get("generator"))
            if key not in seen:
                seen.add(key)
                rows.append(r)
    rows.sort(key=lambda r: (str(r.get("run")), r.get("step", 0), str(r.get("generator"))))
    write_json(target, results)


def cmd_export(args: argparse.Namespace) -> int:
    """export_pretrained.py --select on the steps whose checkpoints are here (an earlier
    window's rows name checkpoints that did not come back); where no step is eligible yet, the
    step with the best mean held-out score (else the latest common checkpoint) is exported as
    well, under exports/ rather than pretrained/, and said to be not eligible."""
    from began_core.runs.run_dir import RunDir
    from scripts import export_pretrained

    runs, work = args.runs, args.work
    have = {g: {s for s, _ in RunDir(runs / f"gamma{g}").checkpoints()} for g in GAMMAS}
    common = sorted(set.intersection(*have.values())) if all(have.values()) else []
    info: dict = {"selected": False, "step": None, "why": "", "folders": []}
    scores = read_json(args.scores, {}) or {}
    present = {
        "rows": [
            r
            for r in scores.get("rows", [])
            if r.get("step") in have.get(str(r.get("run", ""))[len("gamma") :], set())
        ],
        "reference": scores.get("reference", {}),
    }
    write_json(work / "scores-present.json", present)
    for where in ("pretrained", "exports"):
        shutil.rmtree(work / where, ignore_errors=True)
    command = [sys.executable, "-m", "scripts.export_pretrained", str(runs)]
    extra = ["--n", str(args.n)] if args.n else []
    try:
        step, chosen, table = export_pretrained.select(present, args.every)
        info.update(selected=True, step=step, generators=chosen, table=table)
        command += ["--select", str(work / "scores-present.json"), "--every", str(args.every)]
        command += ["--out", str(work / "pretrained"), *extra]
    except SystemExit as e:
        info["why"] = str(e).split(":", 1)[0]
        step = _best_common(present, common, args.every) if common else None
        if step is None:
            info["why"] += "; and the three runs have no checkpoint at a common step"
            write_json(work / "export.json", info)
            print(f"export: nothing to export ({info['why']})", file=sys.stderr)
            return 1
        info["step"] = step
        command += ["--step", str(step), "--out", str(work / "exports"), *extra]
    print("export: " + " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    where = work / ("pretrained" if info["selected"] else "exports")
    info["folders"] = sorted(p.name for p in where.glob("*-gamma*") if p.is_dir())
    info["rc"] = done.returncode
    write_json(work / "export.json", info)
    return done.returncode


def _best_common(scores: dict, common: list[int], every: int) -> int:
    """The common checkpoint step with the lowest held-out score averaged over the three runs
    (the better of G and G_ema each), else the latest common step."""
    best: dict[tuple[str, int], float] = {}
    for r in scores.get("rows", []):
        if r.get("generator") not in ("G", "G_ema") or r.get("step") not in common:
            continue
        key = (str(r["run"]), int(r["step"]))
        best[key] = min(best.get(key, math.inf), float(r["heldout_fd"]))
    scored = [s for s in common if all((f"gamma{g}", s) in best for g in GAMMAS)]
    if not scored:
        return common[-1]
    return min(scored, key=lambda s: statistics.fmean(best[(f"gamma{g}", s)] for g in GAMMAS))


# ---------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    if argv == ["env"]:
        return cmd_env()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("steps", help="lowest step of the gamma runs")
    s.add_argument("runs", type=Path)
    s = sub.add_parser("record", help="append a stage's result")
    s.add_argument("work", type=Path)
    s.add_argument("stage")
    s.add_argument("status")
    s.add_argument("seconds", type=int)
    s.add_argument("limit", type=int)
    s.add_argument("note", nargs="?", default="")
    s = sub.add_parser("snapshot", help="each run's step before training")
    s.add_argument("runs", type=Path)
    s.add_argument("out", type=Path)
    s = sub.add_parser("score", help="score_runs.py per gamma, side by side")
    s.add_argument("runs", type=Path)
    s.add_argument("--json", type=Path, required=True)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--every", type=int, default=1000)
    s.add_argument("--n", type=int, default=562)
    s.add_argument("--until", type=int, default=10**9, help="last step scored")
    s.add_argument("--seconds", type=float, default=60)
    s.add_argument("--until-file", type=Path, default=None)
    s.add_argument("--pause", type=int, default=10)
    s.add_argument("--busy-cores", type=int, default=0, help="cores left to the training")
    s = sub.add_parser("export", help="export_pretrained.py --select, with its fallback")
    s.add_argument("runs", type=Path)
    s.add_argument("--scores", type=Path, required=True)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--every", type=int, default=1000)
    s.add_argument("--n", type=int, default=None)
    s = sub.add_parser("pack", help="build the output folder")
    s.add_argument("out", type=Path)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--runs", type=Path, required=True)
    s.add_argument("--final", action="store_true")
    s.add_argument("--rest", action="store_true")
    s.add_argument("--dry-run", action="store_true")
    s = sub.add_parser("check", help="check an output folder against the limits")
    s.add_argument("out", type=Path)
    s = sub.add_parser("unpack", help="place a window's results into a checkout")
    s.add_argument("src", type=Path)
    s.add_argument("--into", type=Path, default=ROOT)
    s.add_argument("--runs-into", type=Path, default=None)
    s.add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    if args.command == "steps":
        return cmd_steps(args.runs)
    if args.command == "record":
        return cmd_record(args.work, args.stage, args.status, args.seconds, args.limit, args.note)
    if args.command == "snapshot":
        return cmd_snapshot(args.runs, args.out)
    if args.command == "score":
        return cmd_score(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "pack":
        return pack(
            args.out, args.work, args.runs, final=args.final, dry_run=args.dry_run, rest=args.rest
        )
    if args.command == "check":
        problems = check_limits(args.out)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    if not args.src.is_dir():
        raise SystemExit(f"error: {args.src} is not a folder; give the window's output folder.")
    return unpack(args.src, args.into, args.runs_into, args.force)


if __name__ == "__main__":
    sys.exit(main())

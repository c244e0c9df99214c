"""The run directory: the only contract between the trainer (writes) and the dashboard (reads).

    RUN/
      config.json          resolved RunConfig (+ "meta": command, versions, start time)
      metrics.jsonl        one JSON object per logged step, appended and flushed
      status.json          {"state": running | finished | stopped | failed, "step", "error", ...}
      samples/step_0000500.png   G(z) for one fixed z, by step
      checkpoints/step_0001000/  a model repository + training_state.pt, written atomically
      checkpoints/latest.json    {"step": ..., "path": "step_0001000"}
      STOP                 created by anyone who wants the trainer to stop gracefully
      launch.json, train.log   the process a launcher started and its output (launch.py)

Readers tolerate a half-written last line of metrics.jsonl; every other file is replaced
atomically (temp file, fsync, rename), so it is either the old version or the new one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..atomic import fsync_dir
from ..atomic import write_text as atomic_write_text  # tests stand in for it here
from ..config import ConfigError, RunConfig
from ..faults import point, write_error

STATES = ("running", "finished", "stopped", "failed")
LAUNCH_FILE = "launch.json"  # written by launch.py: the process that trains the run
_STEP_RE = re.compile(r"step_(\d+)")


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            point(f"fsync {p.name}")
    fsync_dir(path)


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.status_path = self.path / "status.json"
        self.samples_dir = self.path / "samples"
        self.checkpoints_dir = self.path / "checkpoints"
        self.stop_path = self.path / "STOP"

    @property
    def name(self) -> str:
        """The folder's name as text whatever its bytes (undecodable ones as \\xNN), for
        pages and messages: a name that is not UTF-8 must not break them."""
        return text(self.path.name)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def exists(self) -> bool:
        """A run directory, not a checkpoint folder (which has a config.json too)."""
        return self.config_path.is_file() and self.checkpoints_dir.is_dir()

    def create(self) -> None:
        for d in (self.path, self.samples_dir, self.checkpoints_dir):
            d.mkdir(parents=True, exist_ok=True)

    # config.json
    def write_config(self, config: RunConfig, meta: dict[str, Any] | None = None) -> None:
        data = {**config.to_dict(), "meta": meta or {}}
        atomic_write_text(self.config_path, json.dumps(data, indent=2) + "\n")

    def read_config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(self.read_config_dict())
        except ConfigError as e:
            if str(self.config_path) in str(e):
                raise
            raise ConfigError(f"{self.config_path} is not a valid run configuration: {e}") from e
        except (TypeError, AttributeError, ValueError) as e:  # a field of the wrong type
            raise ConfigError(
                f"{self.config_path} is not a valid run configuration ({type(e).__name__}: "
                f"{e}); was it edited by hand? Each checkpoint's training.json holds a copy."
            ) from e

    def read_config_dict(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a run directory (no config.json); "
                "start a run with `python -m began_core train --out DIR`."
            )
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except ValueError as e:  # not JSON, or not UTF-8
            raise ConfigError(
                f"{self.config_path} is not valid JSON ({e}); was it edited by hand? Each "
                "checkpoint's training.json holds a copy of the run configuration."
            ) from e
        if not isinstance(data, dict):
            raise ConfigError(f"{self.config_path} holds a {type(data).__name__}, not an object.")
        return data

    # metrics.jsonl
    def append_metrics(self, record: dict[str, Any]) -> None:
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        except OSError as e:
            what = f"metrics.jsonl line of step {record.get('step')}"
            raise (write_error(e, self.path, what) or e) from e
        point("append metrics.jsonl")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete records; a half-written last line (a writer mid-append) is ignored."""
        if not self.metrics_path.is_file():
            return []
        records = []
        with open(self.metrics_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # garbage, or a line a crash cut short
                if isinstance(record, dict) and isinstance(record.get("step"), int):
                    records.append(record)
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop records logged after the checkpoint being resumed from."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # status.json
    def write_status(self, state: str, **fields: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; the states are {', '.join(STATES)}")
        status = {"state": state, "pid": os.getpid(), "updated": time.time(), **fields}
        text = json.dumps(status, indent=2) + "\n"
        try:
            atomic_write_text(self.status_path, text)
        except OSError as e:
            if state != "failed":
                raise (write_error(e, self.path, "status.json") or e) from e
            # A failure must be recorded even on a full disk, where a temp file cannot be
            # made: overwrite in place (the old status frees the space the new one needs).
            try:
                with open(self.status_path, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e2:  # a read-only folder: nothing can record it
                what = "failure of the run (status.json)"
                raise (write_error(e2, self.path, what) or e2) from e2

    def read_status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent, unreadable, garbage or not UTF-8
            return {"state": "unknown"}
        return status if isinstance(status, dict) and "state" in status else {"state": "unknown"}

    # STOP
    def request_stop(self) -> None:
        self.stop_path.touch()

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    # samples/
    def sample_path(self, step: int, generator: str = "G") -> Path:
        """G's grid of a step; G_ema's (ema.py), where the run keeps one, in samples/G_ema/."""
        folder = self.samples_dir if generator == "G" else self.samples_dir / generator
        return folder / f"step_{step:07d}.png"

    def samples(self, generator: str = "G") -> list[tuple[int, Path]]:
        return _by_step(self.sample_path(0, generator).parent.glob("step_*.png"))

    def sample_generators(self) -> list[str]:
        """The generators this run has sample grids of: G, and G_ema where it keeps one."""
        return ["G"] + (["G_ema"] if self.samples("G_ema") else [])

    # checkpoints/
    def checkpoints(self) -> list[tuple[int, Path]]:
        return _by_step(p for p in self.checkpoints_dir.glob("step_*") if p.is_dir())

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoints_dir / "latest.json"
        try:
            path = self.checkpoints_dir / json.loads(pointer.read_text())["path"]
            if path.is_dir():
                return path
        except (OSError, KeyError, TypeError, ValueError):  # absent, garbage, half-written
            pass
        found = self.checkpoints()  # pointer lost: the newest complete folder
        return found[-1][1] if found else None

    def write_checkpoint(
        self, step: int, write: Callable[[Path], None], keep: int = 3, *, best: bool = False
    ) -> Path:
        """`write(tmp_dir)` fills a temporary folder; it becomes `step_N` by one rename.

        A crash at any moment leaves either no `step_N` or a complete one, and `latest.json`
        always names a complete checkpoint. With `best`, the folder is `best_step_N` instead,
        named by `best.json`, and it replaces the previous best (never counted among `keep`).
        """
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        name = f"{'best_' if best else ''}step_{step:07d}"
        final = self.checkpoints_dir / name
        tmp = self.checkpoints_dir / f".tmp_{name}_{os.getpid()}"
        for stale in self.checkpoints_dir.glob(f".tmp_{name}_*"):  # also a killed writer's
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.mkdir()
            write(tmp)
            _fsync_tree(tmp)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            error = write_error(e, self.path, f"checkpoint of step {step}")
            if error is None:
                raise
            raise error from e
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        point(f"rename {tmp.name} -> {final.name}")
        fsync_dir(self.checkpoints_dir)
        try:
            atomic_write_text(
                self.checkpoints_dir / ("best.json" if best else "latest.json"),
                json.dumps({"step": step, "path": final.name}) + "\n",
            )
        except OSError as e:  # the folder is complete: a resume finds it without the pointer
            raise (write_error(e, self.path, f"pointer to checkpoint {step}") or e) from e
        if best:
            for old in self.checkpoints_dir.glob("best_step_*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
                    point(f"delete {old.name}")
        else:
            for _, old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
                point(f"delete {old.name}")
        return final

    def resume_checkpoint(self, problem: Callable[[Path], str | None]) -> Path | None:
        """The newest checkpoint a resume can use: latest.json's, or, when `problem(folder)`
        finds it damaged (truncated weights, unreadable training state), the newest older one
        it accepts, with a note on stderr naming what was skipped and why."""
        latest = self.latest_checkpoint()
        if latest is None:
            return None
        older = [p for _, p in reversed(self.checkpoints()) if p != latest]
        for candidate in [latest, *older]:
            why = problem(candidate)
            if why is None:
                return candidate
            print(
                f"note: checkpoint {candidate.name} of {self.path} is damaged ({why}); "
                "falling back to the previous complete checkpoint.",
                file=sys.stderr,
            )
        return None

    def best_checkpoint(self) -> Path | None:
        """The best-scoring checkpoint (a run with --score-every keeps one), or None."""
        try:
            pointer = json.loads((self.checkpoints_dir / "best.json").read_text())
            path = self.checkpoints_dir / pointer["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return path if path.is_dir() else None


def _by_step(paths: Iterator[Path]) -> list[tuple[int, Path]]:
    found = []
    for p in paths:
        m = _STEP_RE.fullmatch(p.stem if p.suffix == ".png" else p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def text(name: str) -> str:
    """A file name as printable text: bytes the file system gave that are not UTF-8 (decoded
    by Python as lone surrogates) shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def list_runs(root: str | os.PathLike, *, starting: bool = False) -> list[RunDir]:
    """Run directories directly under `root`, newest first (by their config.json, else their
    launch.json). With `starting`, also the runs a launcher has just started, or that failed to
    start, which have a launch.json and perhaps no config.json yet: what a dashboard lists.
    Without, only runs the trainer has written (config.json and checkpoints/)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        run = RunDir(p)
        started = run.config_path.is_file() or (p / LAUNCH_FILE).is_file()
        if not (started if starting else run.exists()):
            continue
        for marker in (run.config_path, p / LAUNCH_FILE):
            try:
                found.append((marker.stat().st_mtime, run))
                break
            except OSError:  # absent, or deleted while we look
                continue
    return [run for _, run in sorted(found, key=lambda t: t[0], reverse=True)]


def run_of(checkpoint: str | os.PathLike) -> RunDir | None:
    """The run a checkpoint folder belongs to (RUN/checkpoints/step_N), or None."""
    path = Path(checkpoint)
    run = RunDir(path.parent.parent)
    return run if path.parent.name == "checkpoints" and run.exists() else None


def find_checkpoint(path: str | os.PathLike, step: int | None = None) -> tuple[Path, RunDir | None]:
    """(checkpoint folder, its run) for what a user names: a run directory gives its latest
    checkpoint, or the one at `step`; a checkpoint inside a run gives itself and that run;
    anything else (an exported folder, a Hub repo id) comes back as it is, with no run."""
    path = Path(path)
    run = RunDir(path)
    if not run.exists():
        return path, run_of(path)
    if step is not None:
        found = dict(run.checkpoints())
        if step not in found:
            raise ConfigError(
                f"run {path} has no checkpoint at step {step}; it has {sorted(found) or 'none'}."
            )
        return found[step], run
    latest = run.latest_checkpoint()
    if latest is None:
        raise ConfigError(f"run {path} has no checkpoint yet.")
    return latest, run

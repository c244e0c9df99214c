"""Start, watch, stop, resume and delete training runs as background processes.

The dashboard calls these, and so can a notebook or a test: no UI here. Each run is a
`python -m began_core train` process in its own session, so it outlives the page, the browser
tab and the server that started it; it writes its run directory (runs.py) and its output to
`RUN/train.log`. Beside them this module keeps `RUN/launch.json` (the process it started), so
a run that dies before writing its status, or is killed without a chance to write it, still
shows as failed, with the tail of its log.

    config = validate_launch({"data": "shapes", "filters": 8, "steps": 300})
    pid = start_run("runs/tiny", train_flags(config))
    run_state(RunDir("runs/tiny"))        # "starting", then "running", then "finished"
    stop_run(RunDir("runs/tiny"))         # checkpoint written, state "stopped"
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..flags import OPTIONS, config_from_flags
from .run_dir import LAUNCH_FILE, RunDir, atomic_write_text
from .run_lock import holder, refusal

LOG_FILE = "train.log"
ACTIVE = ("starting", "running", "stopping")  # states with a live training process
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")

# What a user may set when launching: the options the config declares `form=True`, named as
# the CLI's flags. amp, channels_last: True, False or None (auto: see TrainConfig).
LAUNCH_FLAGS: tuple[str, ...] = tuple(o.flag for o in OPTIONS.values() if o.form)


# Popen objects of the runs this process started: polling them reaps finished children.
_children: dict[int, subprocess.Popen] = {}


class LaunchError(ValueError):
    """A run that cannot be started, stopped, resumed or deleted; the message says why."""


# --------------------------------------------------------------------------- validation


def validate_launch(values: Mapping[str, Any]) -> RunConfig:
    """The RunConfig a `train` with these form values would use, or a LaunchError saying why not.

    Numbers go through the same configuration dataclasses as the command line (ConfigError);
    a data path must exist and hold images. Nothing is created or started.
    """
    unknown = set(values) - set(LAUNCH_FLAGS)
    if unknown:
        raise LaunchError(
            f"unknown launch settings {sorted(unknown)}; known: {list(LAUNCH_FLAGS)}."
        )
    from ..data.sources import BUILTIN_DATASETS

    values = {name: _number(name, value) for name, value in values.items()}
    try:
        config = config_from_flags(values)  # the form's fields are named as the CLI's flags
    except ConfigError as e:
        raise LaunchError(str(e)) from None
    source = config.data.source
    check_data(source, config.train.batch_size)
    if source.lower() not in BUILTIN_DATASETS:
        # Stored absolute, so a resume from another working directory finds the same images.
        source = str(Path(source).expanduser().resolve())
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, source=source))
    return config


def _number(name: str, value: Any) -> Any:
    """Form values as the command line's types, so argparse never has to reject one."""
    kind = OPTIONS[name].type  # as the config declares it
    if value is None or kind is str:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise LaunchError(f"{name} must be true, false or unset, got {value!r}.")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise LaunchError(f"{name} must be a finite number, got {value!r}.")
    if kind is int:
        if not number.is_integer():
            raise LaunchError(f"{name} must be a whole number, got {value!r}.")
        return int(number)
    return number


def check_data(source: str, batch_size: int = 1) -> None:
    """A quick look at a data source: a built-in name, or a folder / .zip holding at least
    `batch_size` images, by the trainer's own listing (data.sources.list_images: what it
    refuses, a hostile zip among it, is refused here). Lists file names; decodes nothing."""
    from ..data.sources import BUILTIN_DATASETS, DatasetError, list_images

    if str(source).lower() in BUILTIN_DATASETS:
        return
    if not str(source).strip():
        raise LaunchError("choose a built-in dataset or give a folder of images.")
    try:
        kind, _, _, files = list_images(source)
    except DatasetError as e:
        raise LaunchError(str(e)) from None
    if len(files) < batch_size:
        raise LaunchError(
            f"the {kind} {source!r} holds {len(files)} images, fewer than the batch size "
            f"{batch_size}."
        )


def check_run_name(root: str | os.PathLike, name: str) -> Path:
    """The directory of a new run called `name` under `root`; a LaunchError if it cannot be."""
    if not RUN_NAME.fullmatch(name or ""):
        raise LaunchError(
            f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 80), no spaces or '/'."
        )
    path = Path(root) / name
    if path.exists():
        raise LaunchError(f"a run called {name!r} already exists; choose another name.")
    return path


# --------------------------------------------------------------------------- processes


def start_run(run_dir: str | os.PathLike, args: list[str]) -> int:
    """Start `python -m began_core train --out RUN_DIR ARGS` in the background; its pid.

    Returns at once; the process runs in its own session (a closed tab, a reloaded page or a
    restarted server leave it running) and writes its output to RUN_DIR/train.log.
    """
    run = RunDir(run_dir)
    if run.path.exists() and any(run.path.iterdir()):
        raise LaunchError(f"{run.path} is not empty; choose a new run directory.")
    return _spawn(run, ["--out", str(run.path.resolve()), *args])


def resume_run(run: RunDir | str | os.PathLike, steps: int | None = None) -> int:
    """Continue a run from its last checkpoint, to `steps` in all if given; its pid."""
    run = _as_run(run)
    if run_state(run) in ACTIVE:
        raise LaunchError(f"{run.name} is still training; stop it before resuming.")
    checkpoints = run.checkpoints()
    if not checkpoints:
        raise LaunchError(f"{run.name} has no checkpoint to resume from; start a new run.")
    done = checkpoints[-1][0]
    target = steps if steps is not None else run.read_config().train.steps
    if target <= done:
        raise LaunchError(
            f"{run.name} has a checkpoint at step {done}; resume it to more steps than that."
        )
    extra = [] if steps is None else ["--steps", str(int(steps))]
    return _spawn(run, ["--resume", str(run.path.resolve()), *extra])


def _spawn(run: RunDir, args: list[str]) -> int:
    who = holder(run.path)
    if who is not None:
        raise LaunchError(refusal(run.path, who))
    run.path.mkdir(parents=True, exist_ok=True)
    run.clear_stop()  # a STOP left by a process that was killed must not end the new one
    command = [sys.executable, "-m", "began_core", "train", *args, "--quiet"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The child must import this very began_core, installed or not: `-m` looks in the working
    # directory first, so the child runs in the folder that holds this package (every path
    # it is given is absolute: the run's, and the data's from validate_launch).
    home = Path(__file__).resolve().parents[2]
    with open(run.path / LOG_FILE, "ab") as log:
        log.write(f"$ {' '.join(command[1:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    _write_launch(run, {"pid": proc.pid, "started": time.time(), "command": command[1:]})
    return proc.pid


def stop_run(run: RunDir | str | os.PathLike) -> bool:
    """Ask a run to stop: it finishes its step, writes a checkpoint and says "stopped".

    Returns at once (False if the run was not training). A run still starting up (no step
    taken yet) is ended outright: there is nothing to checkpoint.
    """
    run = _as_run(run)
    state = run_state(run)
    if state not in ACTIVE:
        return False
    pid = _pid(run)
    if state == "starting":
        _write_launch(run, {**_read_launch(run), "cancelled": True})
        _signal(pid, signal.SIGKILL)
        return True
    run.request_stop()
    _signal(pid, signal.SIGTERM)
    return True


def delete_run(run: RunDir | str | os.PathLike) -> None:
    """Delete a run directory; refused while its process is alive."""
    run = _as_run(run)
    if run_state(run) in ACTIVE or holder(run.path) is not None:
        raise LaunchError(f"{run.name} is still training; stop it before deleting it.")
    if not (run.config_path.is_file() or (run.path / LAUNCH_FILE).is_file()):
        raise LaunchError(f"{run.path} is not a run directory; nothing deleted.")
    shutil.rmtree(run.path)


def run_state(run: RunDir | str | os.PathLike) -> str:
    """starting | running | stopping | finished | stopped | failed | unknown.

    The status file, corrected by what became of the process: a "running" run whose process
    is gone was killed or crashed, so it is "failed".
    """
    run = _as_run(run)
    status = run.read_status()
    launch = _read_launch(run)
    if _launch_is_newer(launch, status):
        # The process started last has not written its status yet.
        if _alive(launch["pid"]):
            return "starting"
        return "stopped" if launch.get("cancelled") else "failed"
    state = status.get("state", "unknown")
    if state == "running":
        if not _alive(status.get("pid")):
            cancelled = launch.get("cancelled") and launch.get("pid") == status.get("pid")
            return "stopped" if cancelled else "failed"
        return "stopping" if run.stop_requested() else "running"
    return state


def run_error(run: RunDir | str | os.PathLike, lines: int = 20) -> str | None:
    """Why a failed run failed: the trainer's error, or the tail of its log."""
    run = _as_run(run)
    if run_state(run) != "failed":
        return None
    status, launch = run.read_status(), _read_launch(run)
    tail = log_tail(run, lines)
    if _launch_is_newer(launch, status):
        return tail or "the training process ended before its first step"
    if status.get("state") == "failed":
        return status.get("error") or tail or "the run failed"
    # status.json still says running: the process was killed, or could not write its end
    # (a full disk or a folder turned read-only; its last words are then in the log).
    why = "the training process ended without recording why (killed? a full or read-only disk?)"
    return why + (f"\n{tail}" if tail else "")


def log_tail(run: RunDir | str | os.PathLike, lines: int = 20) -> str:
    """The last `lines` lines of RUN/train.log (progress bars' carriage returns folded)."""
    path = _as_run(run).path / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    kept = [line for line in kept if line.strip()]
    return "\n".join(kept[-lines:])


def _launch_is_newer(launch: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether the process in launch.json was started after status.json was last written by
    another process (one started by hand from the command line, say)."""
    if not launch or launch.get("pid") == status.get("pid"):
        return False
    return status.get("updated", 0) <= launch.get("started", float("inf"))


def _as_run(run: RunDir | str | os.PathLike) -> RunDir:
    return run if isinstance(run, RunDir) else RunDir(run)


def _read_launch(run: RunDir) -> dict[str, Any]:
    try:
        return json.loads((run.path / LAUNCH_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _write_launch(run: RunDir, launch: dict[str, Any]) -> None:
    atomic_write_text(run.path / LAUNCH_FILE, json.dumps(launch, indent=2) + "\n")


def _pid(run: RunDir) -> int | None:
    launch = _read_launch(run)
    return launch.get("pid") or run.read_status().get("pid")


def _alive(pid: int | None) -> bool:
    """Whether `pid` is a live training process (not a zombie, not a reused pid)."""
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child that just ended: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive, but is it ours? /proc says
    proc_dir = Path(f"/proc/{pid}")
    if proc_dir.is_dir():
        try:
            if (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            return b"began_core" in (proc_dir / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
    return True


def _signal(pid: int | None, sig: int) -> None:
    if pid and _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

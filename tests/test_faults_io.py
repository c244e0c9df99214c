"""A full disk or a read-only run folder: every write of a run that fails (a checkpoint, a sample
grid, a metrics.jsonl line, status.json, latest.json) gives one clear error naming the folder
and the fix, marks the run failed with it, and leaves the previous checkpoint loadable and
resumable, bit-for-bit.

Real faults where the test may mount a small tmpfs (root on Linux), simulated ones (the raw
errors the libraries raise: OSError(ENOSPC), safetensors' "os error 28", torch's
"unexpected pos") everywhere.
"""

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from began_core.checkpoints import hub
from began_core.checkpoints.hub import load
from began_core.cli.main import main
from began_core.faults import RunWriteError
from began_core.runs import launch, run_dir
from began_core.runs.run_dir import RunDir
from began_core.training import train as train_module
from began_core.training import training_state
from began_core.training.train import train

from conftest import SHORT, TINY, TensorDataset, dead_pid, tiny_config

pytestmark = pytest.mark.faults

CONFIG = tiny_config(steps=4, log_every=1, sample_every=2, checkpoint_every=2)
FULL = OSError(errno.ENOSPC, "No space left on device")
# What the libraries raise on a full disk (the reports), verbatim in form.
SAFETENSORS_FULL = SafetensorError(
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
    'left on device" })'
)
TORCH_FULL = RuntimeError(
    "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
    "data/3: file write failed; unexpected pos 1196864 vs 1196756"
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("reference") / "run")
    list(train(CONFIG, run.path, dataset=TensorDataset()))
    return load(run.latest_checkpoint()).state_dict()


def same_weights(run: RunDir, reference) -> bool:
    w = load(run.latest_checkpoint()).state_dict()
    return all(torch.equal(w[k], reference[k]) for k in reference)


def train_until_fault(run: RunDir, armed: dict) -> RunWriteError:
    """Train CONFIG; arm the fault once the step-2 checkpoint is written; the error it gives."""
    with pytest.raises(RunWriteError) as info:
        for record in train(CONFIG, run.path, dataset=TensorDataset()):
            if record["step"] == 3:
                armed["on"] = True
    return info.value


def check_failed_cleanly(run: RunDir, error: RunWriteError, what: str) -> None:
    message = str(error)
    assert str(run.path) in message and what in message
    assert f"resume with --resume {run.path}" in message
    status = run.read_status()
    assert status["state"] == "failed" and message in status["error"]
    assert run.latest_checkpoint().name == "step_0000002"
    assert training_state.problem(run.latest_checkpoint()) is None
    assert not list(run.checkpoints_dir.glob(".tmp_*"))


def raise_when(armed: dict, error: BaseException, real, match=lambda *a, **k: True):
    def fake(*args, **kwargs):
        if armed["on"] and match(*args, **kwargs):
            raise error
        return real(*args, **kwargs)

    return fake


def _named(name: str):
    return lambda path, *a, **k: Path(path).name == name


# (case, what to patch, the raw error, which calls fail, what the message says failed)
SIMULATED = [
    ("checkpoint weights, safetensors os error 28", "save_weights", SAFETENSORS_FULL, None, "full"),
    ("checkpoint state, torch unexpected pos", "torch_save", TORCH_FULL, None, "full"),
    ("checkpoint, ENOSPC", "save_weights", FULL, None, "full"),
    (
        "checkpoint, read-only folder",
        "save_weights",
        OSError(errno.EROFS, "Read-only"),
        None,
        "not writable",
    ),
    (
        "checkpoint, permission denied",
        "torch_save",
        PermissionError(errno.EACCES, "denied"),
        None,
        "not writable",
    ),
    ("sample grid, ENOSPC", "save_grid", FULL, None, "full"),
    ("metrics.jsonl line, ENOSPC", "open", FULL, "metrics.jsonl", "full"),
    ("status.json, ENOSPC", "atomic_write_text", FULL, "status.json", "full"),
    ("latest.json, ENOSPC", "atomic_write_text", FULL, "latest.json", "full"),
]


@pytest.mark.parametrize(
    ("target", "error", "name", "said"),
    [case[1:] for case in SIMULATED],
    ids=[case[0] for case in SIMULATED],
)
def test_failed_write_is_clear_marks_failed_and_resumes(
    tmp_path, monkeypatch, reference, target, error, name, said
):
    armed = {"on": False}
    match = _named(name) if name else (lambda *a, **k: True)
    if target == "save_weights":
        monkeypatch.setattr(hub, "save_weights", raise_when(armed, error, hub.save_weights))
    elif target == "torch_save":
        monkeypatch.setattr(training_state.torch, "save", raise_when(armed, error, torch.save))
    elif target == "save_grid":
        monkeypatch.setattr(
            train_module, "save_grid", raise_when(armed, error, train_module.save_grid)
        )
    elif target == "open":
        monkeypatch.setattr(run_dir, "open", raise_when(armed, error, open, match), raising=False)
    else:
        real = run_dir.atomic_write_text
        monkeypatch.setattr(run_dir, "atomic_write_text", raise_when(armed, error, real, match))
    run = RunDir(tmp_path / "run")
    error_seen = train_until_fault(run, armed)
    check_failed_cleanly(run, error_seen, "is full" if said == "full" else "is not writable")
    armed["on"] = False
    list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))
    assert run.read_status()["state"] == "finished"
    assert same_weights(run, reference)


def read_only_warning(err: str, run: RunDir) -> str:
    """The trainer's warning that status.json could not say "failed", checked for the folder
    and the fix."""
    warning = next(line for line in err.splitlines() if line.startswith("warning: "))
    assert "could not be marked failed" in warning and "(status.json)" in warning
    assert f"{run.path} is not writable" in warning and "Make the folder writable" in warning
    assert f"resume with --resume {run.path}" in warning
    return warning


def test_status_json_on_a_read_only_folder_is_said_and_readers_see_a_failed_run(
    tmp_path, monkeypatch, capsys, reference
):
    """Every write fails once the folder turns read-only, the failure's status.json too (temp
    file and in place): the error and a warning say so, and a reader of the stale "running"
    with the trainer's pid gone reports the run failed."""
    armed = {"on": False}
    denied = OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(run_dir, "open", raise_when(armed, denied, open), raising=False)
    real = run_dir.atomic_write_text
    monkeypatch.setattr(run_dir, "atomic_write_text", raise_when(armed, denied, real))
    run = RunDir(tmp_path / "run")
    error = train_until_fault(run, armed)
    assert f"{run.path} is not writable" in str(error)
    read_only_warning(capsys.readouterr().err, run)
    armed["on"] = False
    status = run.read_status()
    assert status["state"] == "running" and status["pid"] == os.getpid()
    run.status_path.write_text(json.dumps({**status, "pid": dead_pid()}))  # the trainer ended
    assert launch.run_state(run) == "failed"
    assert launch.run_error(run).startswith("the training process ended without recording why")
    assert training_state.problem(run.latest_checkpoint()) is None
    list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))
    assert run.read_status()["state"] == "finished"
    assert same_weights(run, reference)


def test_cli_says_the_disk_is_full_in_one_line(tmp_path, monkeypatch, capsys):
    """The issue's first report: torch's 'unexpected pos' on the first checkpoint."""

    def full(*args, **kwargs):
        raise TORCH_FULL

    monkeypatch.setattr(training_state.torch, "save", full)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, *SHORT, "--steps", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"error: the disk holding {out} is full" in err
    assert f"Free space on that disk, then resume with --resume {out}" in err
    assert "unexpected pos" not in err and "Traceback" not in err
    assert RunDir(out).read_status()["state"] == "failed"


# --------------------------------------------------------------------------- a real tmpfs


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs; skip where this process may not (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until the disk is full."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    return filler


def test_first_checkpoint_on_a_full_tmpfs(tmpfs):
    """Too small a disk for one checkpoint (about 0.9 MB): torch or safetensors fails inside."""
    run = RunDir(tmpfs("600k") / "run")
    with pytest.raises(RunWriteError) as info:
        list(train(CONFIG, run.path, dataset=TensorDataset()))
    message = str(info.value)
    assert f"the disk holding {run.path} is full" in message
    assert run.read_status()["state"] == "failed" and message in run.read_status()["error"]
    assert run.latest_checkpoint() is None and not list(run.checkpoints_dir.glob(".tmp_*"))


def test_disk_fills_after_a_checkpoint_then_space_is_freed_and_the_run_resumes(tmpfs, reference):
    root = tmpfs("8m")
    run = RunDir(root / "run")
    armed = {"on": False}
    with pytest.raises(RunWriteError) as info:
        for record in train(CONFIG, run.path, dataset=TensorDataset()):
            if record["step"] == 3 and not armed["on"]:
                armed["on"] = True
                filler = fill(root)
    check_failed_cleanly(run, info.value, "is full")
    filler.unlink()
    list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))
    assert run.read_status()["state"] == "finished"
    assert same_weights(run, reference)


def test_run_folder_turns_read_only_then_writable_and_the_run_resumes(tmpfs, reference, capsys):
    root = tmpfs("8m")
    run = RunDir(root / "run")
    with pytest.raises(RunWriteError) as info:
        for record in train(CONFIG, run.path, dataset=TensorDataset()):
            if record["step"] == 3:
                subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
    message = str(info.value)
    assert f"{run.path} is not writable" in message and f"--resume {run.path}" in message
    # status.json cannot say "failed" on a read-only disk: it still says running, with the
    # pid of a process that has ended, which the dashboard reports as a crash.
    assert run.read_status()["state"] == "running"
    read_only_warning(capsys.readouterr().err, run)
    assert training_state.problem(run.latest_checkpoint()) is None
    subprocess.run(["mount", "-o", "remount,rw", str(root)], check=True)
    list(train(CONFIG, run.path, dataset=TensorDataset(), resume=True))
    assert run.read_status()["state"] == "finished"
    assert same_weights(run, reference)

"""Crash consistency: a run killed with SIGKILL after any one of its file operations (every
write, fsync, rename and deletion of config.json, metrics.jsonl, status.json, the sample grids,
the checkpoint files and latest.json) resumes from its last complete checkpoint and, trained
on, ends bit-for-bit equal to a run that was never interrupted.

The kill is deterministic: `BEGAN_FAULT_KILL_AFTER=k` (began_core/faults.py) makes the trainer
kill itself after its k-th file operation. `python -m pytest -m faults` tries every k; the
default test run tries a handful spread over a checkpoint write. Each attempt trains in a
forked child, so the kill takes a process and not the test.
"""

import os
import signal
import sys

import pytest
import torch

from began_core import faults
from began_core.checkpoints.hub import load
from began_core.runs.run_dir import RunDir
from began_core.training import training_state
from began_core.training.train import train

from conftest import TensorDataset, tiny_config

pytestmark = pytest.mark.faults

# 4 steps, a checkpoint every 2 (keeping 1, so old ones are deleted), a record every step.
CONFIG = tiny_config(
    steps=4,
    log_every=1,
    sample_every=2,
    checkpoint_every=2,
    keep_checkpoints=1,
    deterministic=True,
)
OPS = 87  # file operations of one such run: a kill point after each
# Kill points of the default run: inside the config write, before the first checkpoint,
# each phase of a checkpoint write (weights, state, fsync, rename, latest.json) and the
# deletion of the old checkpoint. Indexes into the operations of the reference run.
QUICK = ("rename .config", "write model.safetensors", "fsync training_state.pt")
QUICK += ("rename .tmp_step", "write .latest", "delete step_")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def in_child(fn, env: dict[str, str] | None = None) -> int:
    """Run fn() in a forked child; its exit code, or -signal if a signal ended it."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            torch.set_num_threads(1)
            os.environ.update(env or {})
            faults._done = 0
            fn()
            code = 0
        except BaseException as e:
            print(f"child failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def strip(records):
    return [{k: r[k] for k in ("step", "k_t", "L_x", "L_G", "M_global", "lr")} for r in records]


def weights(run: RunDir):
    return load(run.latest_checkpoint()).state_dict()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, and the list of its file operations."""
    root = tmp_path_factory.mktemp("reference")
    log = root / "ops.txt"
    env = {faults.LOG_ENV: str(log)}
    code = in_child(lambda: list(train(CONFIG, root / "run", dataset=TensorDataset())), env)
    assert code == 0
    ops = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    run = RunDir(root / "run")
    assert run.read_status()["state"] == "finished"
    return run, ops


def kill_and_resume(tmp_path, k: int, reference) -> str:
    """Kill a run after its k-th file operation, resume it, and check it ends equal to the
    reference. Returns what the resume started from."""
    ref, ops = reference
    run = RunDir(tmp_path / f"k{k}")
    kill = {faults.KILL_ENV: str(k)}
    assert in_child(lambda: list(train(CONFIG, run.path, dataset=TensorDataset())), kill) == (
        -signal.SIGKILL
    ), f"the run was not killed at operation {k} ({ops[k - 1]})"

    resumable = run.exists() and run.latest_checkpoint() is not None
    if resumable:
        chosen = run.resume_checkpoint(training_state.problem)
        assert chosen is not None and training_state.problem(chosen) is None
        start = f"checkpoint {chosen.name}"
    else:
        start = "scratch (killed before its first checkpoint)"
    code = in_child(
        lambda: list(train(CONFIG, run.path, dataset=TensorDataset(), resume=resumable)),
        {faults.KILL_ENV: ""},
    )
    assert code == 0, f"resume after a kill at operation {k} ({ops[k - 1]}) failed"
    assert run.read_status()["state"] == "finished"
    a, b = weights(ref), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a), (
        f"weights differ after a kill at operation {k} ({ops[k - 1]})"
    )
    assert strip(run.read_metrics()) == strip(ref.read_metrics())
    assert not list(run.checkpoints_dir.glob(".tmp_*"))  # the killed writer's temp folder
    return start


def test_every_checkpoint_operation_is_a_kill_point(reference):
    """The operations counted are the run's writes: five files per checkpoint, their fsyncs,
    one rename, latest.json, the deletion of the older checkpoint."""
    _, ops = reference
    checkpoint_ops = [o for o in ops if "safetensors" in o or "latest" in o or "step_000" in o]
    assert sum(o == "write model.safetensors" for o in ops) == 2
    assert sum(o.startswith("delete step_") for o in ops) == 1
    assert len(checkpoint_ops) >= 20
    assert len(ops) == OPS  # if the run's writes change, so does the list of kill points


def pytest_generate_tests(metafunc):
    """Every operation under `-m faults`; the QUICK ones otherwise."""
    if "point" in metafunc.fixturenames:
        full = "faults" in (metafunc.config.getoption("markexpr") or "")
        metafunc.parametrize("point", list(range(1, OPS + 1)) if full else list(QUICK))


def test_killed_after_a_file_operation_resumes_bit_for_bit(tmp_path, reference, point):
    _, ops = reference
    k = (
        point
        if isinstance(point, int)
        else next(i for i, o in enumerate(ops, 1) if o.startswith(point))
    )
    start = kill_and_resume(tmp_path, k, reference)
    print(f"kill point k={k:3d} after {ops[k - 1]:45s} resumed from {start}")

"""torchrun with two CPU processes (gloo): one equilibrium, one run directory, exact handover."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from began_core.checkpoints.hub import load
from began_core.runs.run_dir import RunDir
from began_core.training.batches import Batches
from began_core.training.distributed import Dist

from conftest import ROOT, SHORT, TensorDataset, run_began
from conftest import TINY as TINY_FLAGS

TINY = [*TINY_FLAGS, "--quiet"]

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or shutil.which("true") is None,
    reason="torch.distributed is not available",
)


def env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def torchrun(*args, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TORCHRUN, "-m", "began_core", "train", *args],
        cwd=ROOT,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def single(*args) -> subprocess.CompletedProcess:
    return run_began("train", *args, env=env())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_ranks_one_equilibrium_one_run_dir_and_handover(tmp_path):
    run, ranks = RunDir(tmp_path / "run"), tmp_path / "ranks"
    ema = ["--ema-kimg", "0.1"]  # G_ema too, which every rank keeps alike
    r = torchrun("--out", str(run.path), *TINY, *SHORT, *ema, BEGAN_RANK_LOG_DIR=str(ranks))
    assert r.returncode == 0, r.stderr[-3000:]
    assert load(run.latest_checkpoint()).G_ema is not None

    rank0, rank1 = read_jsonl(ranks / "rank0.jsonl"), read_jsonl(ranks / "rank1.jsonl")
    # Identical k_t, learning rate and weights (G_ema's among them) on both ranks.
    assert rank0[-1]["final"] and rank1[-1]["final"]
    assert rank0[-1]["k_t"] == rank1[-1]["k_t"] > 0
    assert rank0[-1]["lr"] == rank1[-1]["lr"]
    assert rank0[-1]["weights"] == rank1[-1]["weights"]
    # Each rank saw its own data and noise...
    assert rank0[0]["L_x"] != rank1[0]["L_x"]
    # ...and the logged metrics are the mean over ranks.
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [5, 10, 15, 20]
    for m, a, b in zip(metrics, rank0[:-1], rank1[:-1], strict=True):
        for key in ("L_x", "L_G", "L_D"):
            assert m[key] == pytest.approx((a[key] + b[key]) / 2, rel=1e-5)
        assert m["k_t"] == a["k_t"] == b["k_t"]
    # One run directory, written by rank 0 alone.
    assert run.read_status()["state"] == "finished"
    assert run.read_config_dict()["meta"]["processes"] == 2
    assert [s for s, _ in run.checkpoints()] == [10, 20]
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".lock",  # rank 0's, the one writer (run_lock.py)
        "checkpoints",
        "config.json",
        "metrics.jsonl",
        "samples",
        "status.json",
    ]
    state = torch.load(run.latest_checkpoint() / "training_state.pt", weights_only=True)
    assert state["rng_z"].shape[0] == 2 and state["k_t"] == rank0[-1]["k_t"]

    # Resume the distributed run in a single process: the global batch stays 16.
    r = single("--resume", str(run.path), "--steps", "30", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "re-seeded" in r.stderr
    assert run.read_metrics()[-1]["step"] == 30
    assert load(run.latest_checkpoint()).config.n == 8

    # ...and back to two processes.
    r = torchrun("--resume", str(run.path), "--steps", "40", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert run.read_status()["state"] == "finished" and run.read_metrics()[-1]["step"] == 40


def test_two_ranks_score_once_and_keep_one_best(tmp_path):
    """Rank 0 scores G and G_ema and decides "best" for both ranks: no rank compares its own
    float with another's, so rounding cannot make them disagree and deadlock the save."""
    run = RunDir(tmp_path / "run")
    scoring = ["--heldout", "0.2", "--score-every", "5", "--ema-kimg", "0.1"]
    r = torchrun("--out", str(run.path), *TINY, *SHORT, *scoring)
    assert r.returncode == 0, r.stderr[-3000:]
    scored = [m for m in run.read_metrics() if "score" in m]
    assert [m["step"] for m in scored] == [5, 10, 15, 20]
    best, expected = float("inf"), None
    for m in scored:
        for which, score in (("G", m["score"]), ("G_ema", m["score_G_ema"])):
            if score < best:
                best, expected = score, (m["step"], which)
    pointer = json.loads((run.checkpoints_dir / "best.json").read_text())
    record = json.loads((run.best_checkpoint() / "training.json").read_text())
    assert (pointer["step"], record["generator"]) == expected


def test_global_batch_must_split_over_ranks():
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        Batches(TensorDataset(), 16, 0, Dist(rank=0, world=3))
    b0 = Batches(TensorDataset(), 16, 0, Dist(rank=0, world=2))
    b1 = Batches(TensorDataset(), 16, 0, Dist(rank=1, world=2))
    whole = Batches(TensorDataset(), 16, 0)
    assert torch.equal(torch.cat([b0(3), b1(3)]), whole(3))  # the same global batch


def test_hflip_mirrors_a_reproducible_part_of_each_global_batch():
    data = TensorDataset()
    plain, whole = Batches(data, 16, 0)(3), Batches(data, 16, 0, hflip=True)(3)
    mirrored = [not torch.equal(a, b) for a, b in zip(plain, whole, strict=True)]
    assert 0 < sum(mirrored) < 16  # some, not all (half on average)
    for a, b, m in zip(plain, whole, mirrored, strict=True):
        assert torch.equal(b, a.flip(-1) if m else a)  # left to right, nothing else
    assert torch.equal(Batches(data, 16, 0, hflip=True)(3), whole)  # a resume sees the same
    assert not torch.equal(Batches(data, 16, 0, hflip=True)(4), Batches(data, 16, 0)(4))
    halves = [Batches(data, 16, 0, Dist(rank=r, world=2), hflip=True)(3) for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)  # the same for any number of processes


def _worker_pids(parent: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes."""
    found = {}
    for child in subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True
    ).stdout.split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(child)
    return found


@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep")
def test_a_dying_rank_stops_the_others_cleanly(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = subprocess.Popen(
        [
            *TORCHRUN,
            "-m",
            "began_core",
            "train",
            "--out",
            str(run.path),
            *TINY,
            "--steps",
            "100000",
            "--log-every",
            "5",
            "--checkpoint-every",
            "10",
        ],
        cwd=ROOT,
        env=env(BEGAN_DIST_TIMEOUT="30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not run.checkpoints():
            time.sleep(0.2)
        assert run.checkpoints(), "no checkpoint within 2 minutes"
        workers = _worker_pids(proc.pid)
        assert set(workers) == {0, 1}
        os.kill(workers[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    status = run.read_status()
    assert status["state"] == "failed"
    assert "lost contact" in status["error"], status["error"]
    assert "lost contact" in stderr and "--resume" in stderr  # the user is told what happened
    checkpoint = run.latest_checkpoint()
    model = load(checkpoint)  # the last checkpoint is complete and loads
    assert all(torch.isfinite(p).all() for p in model.parameters())

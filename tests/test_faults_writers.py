"""Nothing lost by a command pointed at the wrong place: `export` never removes what it did not
write, and a run has one writer at a time (run_lock.py)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from began_core.config import ConfigError
from began_core.publish.export import export
from began_core.runs import launch
from began_core.runs.run_dir import RunDir
from began_core.runs.run_lock import RunLock, RunLockedError, holder
from began_core.training.train import train

from conftest import ROOT, TensorDataset, run_began, tiny_config, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("writers") / "run"
    list(train(tiny_config(steps=10, checkpoint_every=10), path, dataset=TensorDataset()))
    return RunDir(path)


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --------------------------------------------------------------------------- export


def test_export_refuses_a_folder_of_other_files_and_keeps_them(run, tmp_path):
    docs = tmp_path / "mydocs"
    (docs / "sub").mkdir(parents=True)
    (docs / "thesis.txt").write_text("years of work")
    (docs / "sub" / "notes.md").write_text("more")
    with pytest.raises(ConfigError, match=r"holds files an export does not write \(sub/, thesis"):
        export(run.path, docs, evaluate=False)
    assert tree(docs) == ["sub", "sub/notes.md", "thesis.txt"]
    # A README.md alone is not an earlier export either.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.md").write_text("mine")
    with pytest.raises(ConfigError, match="no export's training.json"):
        export(run.path, tmp_path / "other", evaluate=False)
    assert (tmp_path / "other" / "README.md").read_text() == "mine"


@pytest.mark.parametrize(
    ("where", "said"),
    [
        (lambda run: run.path, "is the run"),
        (lambda run: run.path / "checkpoints", "lies inside the run"),
        (lambda run: run.path / "exports" / "x", "lies inside the run"),
        (lambda run: run.path.parent, "contains the run"),
    ],
    ids=["the run", "its checkpoints", "inside it", "around it"],
)
def test_export_refuses_the_run_and_what_is_inside_or_around_it(run, where, said):
    before = tree(run.path)
    with pytest.raises(ConfigError, match=said):
        export(run.path, where(run), evaluate=False)
    assert tree(run.path) == before


def test_export_refuses_the_current_folder_and_a_file(run, tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    (here / "keep.txt").write_text("x")
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        with pytest.raises(ConfigError, match="current folder or one above it"):
            export(run.path, out, evaluate=False)
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        export(run.path, here / "keep.txt", evaluate=False)
    assert tree(here) == ["keep.txt"]


def test_export_replaces_an_earlier_export_whole_and_leaves_no_temp_folder(run, tmp_path):
    out = export(run.path, tmp_path / "shipped", evaluate=False)
    first = (out / "model.safetensors").stat().st_ino
    again = export(run.path, tmp_path / "shipped", evaluate=False, dtype=torch.float32)
    assert again == out and (out / "model.safetensors").stat().st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped"]


def test_export_killed_leaves_no_temp_folder_and_the_earlier_export(run, tmp_path):
    out = export(run.path, tmp_path / "shipped", evaluate=False)
    before = (out / "training.json").read_text()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(
            [sys.executable, "-m", "began_core", "export", str(run.path), str(out)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        wait_until(lambda: list(tmp_path.glob(".shipped.export-*")), 60, "the temp folder")
        proc.send_signal(sig)
        proc.wait(timeout=60)
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM
            assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped"]
    # SIGKILL cannot be caught: the next export removes what the killed one left.
    assert (out / "training.json").read_text() == before
    export(run.path, out, evaluate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped"]


def test_cli_export_into_the_run_is_one_line_and_deletes_nothing(run):
    before = tree(run.path)
    r = run_began("export", str(run.path), str(run.path), "--no-evaluate")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is the run" in r.stderr
    assert tree(run.path) == before


# --------------------------------------------------------------------------- one writer per run


def test_a_second_writer_is_refused_naming_the_first(run, tmp_path):
    lock = RunLock(run.path)
    lock.acquire()
    try:
        assert f"process {os.getpid()}" in holder(run.path)
        before = run.metrics_path.read_text()
        with pytest.raises(RunLockedError, match=f"being written by process {os.getpid()}"):
            list(train(tiny_config(steps=12), run.path, dataset=TensorDataset(), resume=True))
        assert run.metrics_path.read_text() == before  # nothing written
        with pytest.raises(launch.LaunchError, match="being written by process"):
            launch.resume_run(run, steps=20)
        with pytest.raises(launch.LaunchError, match="still training"):
            launch.delete_run(run)
    finally:
        lock.release()
    assert holder(run.path) is None


def test_two_train_processes_on_one_run_one_is_refused(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", "shapes", "--filters", "8", "--h-dim", "16"]
    args += ["--z-dim", "16", "--steps", "100000", "--quiet"]
    first = subprocess.Popen(
        [sys.executable, "-m", "began_core", *args], cwd=ROOT, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: RunDir(out).read_metrics(), 120, "the first writer's steps")
        second = run_began(*args)
        assert second.returncode == 2
        assert f"being written by process {first.pid}" in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    # The first one's run is whole: one line per step, and a resume takes the lock at once.
    steps = [json.loads(line)["step"] for line in RunDir(out).metrics_path.read_text().splitlines()]
    assert steps == sorted(set(steps))
    assert holder(out) is None


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "began_core", "train", "--out", str(out), "--data", "shapes", "--filters", "8"]
    args += ["--h-dim", "16", "--z-dim", "16", "--steps", "100000", "--checkpoint-every", "5"]
    proc = subprocess.Popen([sys.executable, *args, "--quiet"], cwd=ROOT)
    try:
        wait_until(lambda: RunDir(out).latest_checkpoint(), 120, "a checkpoint")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    time.sleep(0.1)
    assert holder(out) is None
    r = run_began("train", "--resume", str(out), "--steps", "12", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]


# --------------------------------------------------------------------------- decoding


# The CLI with each image's decoding slowed to 5 ms, so that a Ctrl-C surely lands mid-decode.
SLOW_DECODE = (
    "import sys, time\n"
    "import began_core.data.decoding as d\n"
    "real = d.load_image\n"
    "d.load_image = lambda *a, **k: (time.sleep(0.005), real(*a, **k))[1]\n"
    "from began_core.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_ctrl_c_while_decoding_stops_at_once_and_keeps_nothing(tmp_path):
    from PIL import Image

    folder, cache, out = tmp_path / "faces", tmp_path / "cache", tmp_path / "run"
    folder.mkdir()
    for i in range(1200):  # enough to be cached: about 6 s of decoding here
        Image.new("RGB", (40, 40), (i % 256, 7 * i % 256, 100)).save(folder / f"{i:05d}.png")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_DECODE, "train", "--out", str(out), "--data", str(folder)],
        cwd=ROOT,
        env={**os.environ, "BEGAN_CACHE": str(cache)},
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: list(cache.rglob("*.tmp.npy")), 120, "decoding to start")
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 2, err[-2000:]
    assert proc.returncode == 2 and "stopped while decoding" in err
    assert "nothing was trained or written" in err.strip().splitlines()[-1]
    assert not list(cache.rglob("*.npy")) and not out.exists()

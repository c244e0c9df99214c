"""began_core.runs.launch: validation, and real training processes started, stopped, killed,
resumed and deleted (tiny models on the built-in `shapes` data)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from began_core.cli.main import build_parser, resolve_config
from began_core.flags import train_flags
from began_core.runs import launch
from began_core.runs.run_dir import LAUNCH_FILE, RunDir, list_runs

from conftest import dead_pid, wait_until

pytestmark = pytest.mark.usefixtures("end_launched_children")

TINY = {"data": "shapes", "filters": 8, "log_every": 2, "sample_every": 50}
TIMEOUT = 120  # seconds; generous, for a loaded 2-core machine


def args(**overrides):
    return train_flags(launch.validate_launch({**TINY, **overrides}))


# --------------------------------------------------------------------------- validation


def test_validate_launch_gives_the_cli_config():
    config = launch.validate_launch(
        {**TINY, "gamma": 0.3, "lambda_k": 0.002, "eta": 2, "lr": 5e-5, "steps": 77, "seed": 3}
    )
    assert (config.data.source, config.model.n, config.model.channels) == ("shapes", 8, 3)
    t = config.train
    assert (t.gamma, t.lambda_k, t.eta, t.lr, t.steps, t.seed) == (0.3, 0.002, 2, 5e-5, 77, 3)
    cli_args = build_parser().parse_args(["train", "--out", "x", *train_flags(config)])
    assert resolve_config(cli_args) == config  # the process trains what was validated
    assert launch.validate_launch({"data": "fashion-mnist"}).model.channels == 1


@pytest.mark.parametrize("amp", [None, True, False])
@pytest.mark.parametrize("channels_last", [None, False])
def test_the_speed_choices_reach_the_trainer(amp, channels_last):
    config = launch.validate_launch({**TINY, "amp": amp, "channels_last": channels_last})
    assert (config.train.amp, config.train.channels_last) == (amp, channels_last)
    cli_args = build_parser().parse_args(["train", "--out", "x", *train_flags(config)])
    assert resolve_config(cli_args) == config
    with pytest.raises(launch.LaunchError, match="amp must be true, false or unset"):
        launch.validate_launch({**TINY, "amp": "yes"})


def test_random_flips_reach_the_trainer():
    config = launch.validate_launch({**TINY, "hflip": True})
    assert config.data.hflip
    assert "--hflip" in train_flags(config)
    assert not launch.validate_launch({**TINY, "hflip": False}).data.hflip
    cli_args = build_parser().parse_args(["train", "--out", "x", *train_flags(config)])
    assert resolve_config(cli_args) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gamma": 0.0}, "gamma must be in (0, 1]"),
        ({"gamma": 1.5}, "gamma must be in (0, 1]"),
        ({"lambda_k": 0}, "lambda_k must be positive"),
        ({"eta": 3}, "eta must be 1 or 2, got 3"),
        ({"lr": 0.0}, "lr and lr_min must be positive"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"resolution": 48}, "resolution 48 is not supported"),
        ({"filters": 0}, "n must be a positive integer"),
        ({"data": ""}, "choose a built-in dataset or give a folder"),
        ({"colour": 3}, "unknown launch settings"),
        ({"gamma": "half"}, "gamma must be a number, got 'half'"),
        ({"steps": 10.5}, "steps must be a whole number"),
        ({"lambda_k": float("nan")}, "lambda_k must be a finite number"),
    ],
)
def test_validate_launch_rejects_bad_values(values, message):
    with pytest.raises(launch.LaunchError, match=message.replace("(", r"\(").replace("]", r"\]")):
        launch.validate_launch({**TINY, **values})


def test_validate_launch_checks_the_data_path(tmp_path):
    with pytest.raises(launch.LaunchError, match="not found: no such file or folder"):
        launch.validate_launch({**TINY, "data": str(tmp_path / "nowhere")})
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(launch.LaunchError, match="no images found in the folder"):
        launch.validate_launch({**TINY, "data": str(empty)})
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(launch.LaunchError, match="not a .zip"):
        launch.validate_launch({**TINY, "data": str(tmp_path / "file.txt")})
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(few / f"{i}.png")
    with pytest.raises(launch.LaunchError, match="holds 3 images, fewer than the batch size 16"):
        launch.validate_launch({**TINY, "data": str(few)})
    config = launch.validate_launch({**TINY, "data": str(few), "batch_size": 2})
    assert Path(config.data.source).is_absolute()


def test_check_run_name(tmp_path):
    assert launch.check_run_name(tmp_path, "gamma-0.5_a") == tmp_path / "gamma-0.5_a"
    for bad in ("", "a b", "../up", "a/b", ".hidden"):
        with pytest.raises(launch.LaunchError, match="run name"):
            launch.check_run_name(tmp_path, bad)
    (tmp_path / "taken").mkdir()
    with pytest.raises(launch.LaunchError, match="already exists"):
        launch.check_run_name(tmp_path, "taken")


# --------------------------------------------------------------------------- run states


def fake_run(path: Path, state: str | None, pid: int | None) -> RunDir:
    run = RunDir(path)
    run.create()
    run.config_path.write_text("{}")
    if state is not None:
        run.status_path.write_text(json.dumps({"state": state, "pid": pid, "step": 4}))
    return run


def test_dead_or_foreign_pid_means_failed(tmp_path):
    done_pid = dead_pid()
    assert launch.run_state(fake_run(tmp_path / "dead", "running", done_pid)) == "failed"
    other = subprocess.Popen(["sleep", "30"])  # alive, but not a trainer (a reused pid)
    try:
        run = fake_run(tmp_path / "foreign", "running", other.pid)
        assert launch.run_state(run) == "failed"
        assert "killed" in launch.run_error(run)
    finally:
        other.kill()
        other.wait()
    assert launch.run_state(fake_run(tmp_path / "ok", "finished", 1)) == "finished"
    assert launch.run_state(fake_run(tmp_path / "new", None, None)) == "unknown"
    assert launch.run_error(tmp_path / "ok") is None


def test_a_run_resumed_by_hand_is_seen_running(tmp_path):
    gone_pid = dead_pid()
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "began_core"])
    try:
        deadline = time.time() + 30  # on a loaded machine the new process may take a moment
        while not launch._alive(trainer.pid) and time.time() < deadline:
            time.sleep(0.1)
        run = fake_run(tmp_path / "r", "running", trainer.pid)
        launched = {"pid": gone_pid, "started": time.time() - 100}  # by the dashboard, earlier
        (run.path / LAUNCH_FILE).write_text(json.dumps(launched))
        status = json.loads(run.status_path.read_text())
        run.status_path.write_text(json.dumps({**status, "updated": time.time()}))
        assert launch.run_state(run) == "running"
        (run.path / LAUNCH_FILE).write_text(json.dumps({**launched, "started": time.time()}))
        assert launch.run_state(run) == "failed"  # the dashboard's newer process died
    finally:
        trainer.kill()
        trainer.wait()


def test_log_tail_folds_progress_bars(tmp_path):
    (tmp_path / launch.LOG_FILE).write_text("one\n 10%\r 50%\r100%\n\nerror: boom\n")
    assert launch.log_tail(tmp_path) == "one\n100%\nerror: boom"
    assert launch.log_tail(tmp_path, 1) == "error: boom"
    assert launch.log_tail(tmp_path / "missing") == ""


def test_list_runs_starting_includes_runs_still_starting(tmp_path):
    assert list_runs(tmp_path / "none", starting=True) == []
    fake_run(tmp_path / "old", "finished", 1)
    time.sleep(0.02)
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / LAUNCH_FILE).write_text("{}")
    (tmp_path / "stray").mkdir()
    assert [r.path.name for r in list_runs(tmp_path, starting=True)] == ["new", "old"]
    assert [r.path.name for r in list_runs(tmp_path)] == ["old"]  # only what the trainer wrote


# --------------------------------------------------------------------------- processes


def test_start_stop_resume_delete(tmp_path):
    run = RunDir(tmp_path / "a")
    pid = launch.start_run(run.path, args(steps=5000, checkpoint_every=10_000))
    assert pid > 0 and launch.run_state(run) in ("starting", "running")
    wait_until(
        lambda: launch.run_state(run) == "running" and len(run.read_metrics()) >= 2,
        TIMEOUT,
        what="the run to log",
    )
    with pytest.raises(launch.LaunchError, match="still training"):
        launch.delete_run(run)
    with pytest.raises(launch.LaunchError, match="still training"):
        launch.resume_run(run)
    assert launch.stop_run(run)
    wait_until(lambda: launch.run_state(run) == "stopped", TIMEOUT, what="the run to stop")
    status = run.read_status()
    assert run.latest_checkpoint() is not None and status["step"] == run.checkpoints()[-1][0]
    assert not launch.stop_run(run)  # nothing to stop

    with pytest.raises(launch.LaunchError, match="more steps"):
        launch.resume_run(run, steps=status["step"])
    launch.resume_run(run, steps=status["step"] + 2)
    assert launch.run_state(run) in ("starting", "running", "finished")
    wait_until(
        lambda: launch.run_state(run) == "finished", TIMEOUT, what="the resumed run to finish"
    )
    assert run.read_status()["step"] == status["step"] + 2
    assert "$ -m began_core train --resume" in (run.path / launch.LOG_FILE).read_text()

    launch.delete_run(run)
    assert not run.path.exists()
    with pytest.raises(launch.LaunchError, match="not a run directory"):
        launch.delete_run(tmp_path)


def test_process_that_fails_at_start_shows_failed(tmp_path):
    run = RunDir(tmp_path / "bad")
    launch.start_run(run.path, ["--data", str(tmp_path / "missing"), "--filters", "8"])
    wait_until(lambda: launch.run_state(run) == "failed", TIMEOUT, what="the run to fail")
    assert "not found" in launch.run_error(run)
    assert run.path.name in [r.path.name for r in list_runs(tmp_path, starting=True)]
    launch.delete_run(run)


def test_two_runs_at_once_one_stopped_while_starting_one_killed(tmp_path):
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    launch.start_run(a.path, args(steps=5000, gamma=0.3))
    launch.start_run(b.path, args(steps=5000, gamma=0.7))
    assert launch.stop_run(b)  # at once: b is still starting, or has just begun
    wait_until(lambda: launch.run_state(b) == "stopped", TIMEOUT, what="b to stop")
    wait_until(
        lambda: launch.run_state(a) == "running" and a.read_metrics(), TIMEOUT, what="a to run"
    )
    assert a.read_config().train.gamma == 0.3

    os.kill(a.read_status()["pid"], signal.SIGKILL)  # no chance to write its status
    wait_until(
        lambda: launch.run_state(a) == "failed", TIMEOUT, what="the killed run to show failed"
    )
    assert a.read_status()["state"] == "running"  # what the trainer left behind
    error = launch.run_error(a)
    assert "killed" in error and "began_core train --out" in error  # then its log's tail

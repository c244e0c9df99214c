import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from began_core.cli.main import build_parser, main
from began_core.runs.run_dir import RunDir

from conftest import ROOT, SHORT, TINY, run_began


def test_help_explains_gamma_and_lambda_k():
    text = build_parser().format_help()
    assert "gamma" in text and "diversity ratio" in text
    assert "lambda_k" in text and "gain" in text
    out = run_began("train", "--help").stdout
    assert "--resume" in out and "--dry-run" in out and "--gamma" in out


def test_dry_run_prints_resolved_config_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "--out", str(out), "--gamma", "0.3", "--resolution", "64", "--dry-run"]) == 0
    )
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["train"]["gamma"] == 0.3
    assert resolved["model"]["resolution"] == 64
    assert resolved["train"]["lambda_k"] == 0.001
    assert resolved["data"]["source"] == "fluent-faces"
    assert not out.exists()


def test_fashion_mnist_defaults_to_greyscale(tmp_path, capsys):
    main(["train", "--out", str(tmp_path / "r"), "--data", "fashion-mnist", "--dry-run"])
    assert json.loads(capsys.readouterr().out)["model"]["channels"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resolution", "48"], "32, 64, 128, 256"),
        (["--gamma", "1.5"], "gamma must be in (0, 1]"),
        (["--gamma", "0"], "gamma must be in (0, 1]"),
        (["--data", "no/such/folder"], "no/such/folder"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
    ],
)
def test_bad_input_is_one_clear_line_and_starts_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err.lower()
    assert not (tmp_path / "run").exists()


def test_out_or_resume_required(capsys):
    assert main(["train", "--steps", "5"]) == 2
    assert "--out" in capsys.readouterr().err


def test_train_then_resume_then_sample(tmp_path):
    out = tmp_path / "run"
    r = run_began("train", "--out", str(out), *TINY, *SHORT, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "step 20/20" in r.stdout and "k_t=" in r.stdout and "img/s" in r.stdout
    run = RunDir(out)
    assert run.read_status()["state"] == "finished"

    r = run_began("train", "--resume", str(out), "--steps", "30", "--quiet")
    assert r.returncode == 0, r.stderr
    assert [m["step"] for m in run.read_metrics()][-1] == 30
    assert "--resume" not in run.read_config_dict()["meta"]["command"]  # the original command stays

    r = run_began("train", "--resume", str(out), "--filters", "16")
    assert r.returncode == 2 and "another model" in r.stderr

    grid = tmp_path / "grid.png"
    r = run_began("sample", str(out), "--n", "16", "--out", str(grid))
    assert r.returncode == 0, r.stderr
    assert Image.open(grid).size == (2 + 4 * 34, 2 + 4 * 34)
    r = run_began("sample", str(run.latest_checkpoint()), "--n", "4", "--out", str(grid))
    assert r.returncode == 0, r.stderr  # a bare checkpoint folder works too


def test_sigterm_stops_gracefully_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "began_core",
            "train",
            "--out",
            str(out),
            *TINY,
            "--steps",
            "100000",
            "--quiet",
            "--log-every",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = RunDir(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(run.read_metrics()) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    status = run.read_status()
    assert status["state"] == "stopped"
    assert run.checkpoints()[-1][0] == status["step"] > 0


def test_module_entry_point_reports_unknown_dataset_without_traceback(tmp_path):
    r = run_began("train", "--out", str(tmp_path / "r"), "--data", "nonexistent-builtin")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "fluent-faces" in r.stderr


@pytest.mark.skipif(os.name != "posix", reason="posix signals")
def test_datasets_command_lists_builtins(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "fluent-faces" in out and "shapes" in out and "MIT" in out


def test_the_librarys_start_up_lines_reach_stderr_as_plain_lines(capsys):
    assert main(["datasets"]) == 0
    capsys.readouterr()
    logging.getLogger("began_core.data.sources").info("listing the images in faces/")
    logging.getLogger("began_core.nn.elu").debug("not shown")
    assert capsys.readouterr().err == "listing the images in faces/\n"
    assert main(["datasets"]) == 0  # a second call adds no second handler
    logging.getLogger("began_core").info("once")
    assert capsys.readouterr().err == "once\n"

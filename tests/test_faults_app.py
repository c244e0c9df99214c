"""The dashboard with damaged runs: garbage in metrics.jsonl, a config.json edited by hand into
something invalid, a run folder deleted while the page shows it. The page keeps working."""

import re
import shutil

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from test_app import app, fake_run, texts
from test_faults_runs import CONFIGS

from began_core import launch
from began_core.config import ConfigError

from conftest import dead_pid

pytestmark = pytest.mark.faults


def test_dashboard_keeps_working_with_damaged_runs(runs_dir):
    fake_run(runs_dir, "good", records=10)
    garbage = fake_run(runs_dir, "garbage", records=10)
    with open(garbage.metrics_path, "ab") as f:
        f.write(b'\xff\xfe garbage\n[1, 2]\n5\n{"k_t": 1}\n{"step": 9, "k_')
    fake_run(runs_dir, "list-config", records=5).config_path.write_text("[1, 2]")
    bad = fake_run(runs_dir, "bad-types", records=5)
    bad.config_path.write_text('{"train": "fast", "model": {"n": "many"}, "data": 5}')
    at = app()
    assert not at.exception
    for name in ("garbage", "list-config", "bad-types"):
        at.selectbox(key="run").set_value(name)
        at.run()
        assert not at.exception, name
    shutil.rmtree(bad.path)  # deleted while the page shows it
    at.run()
    assert not at.exception


def hand_edited_runs(runs_dir) -> dict[str, tuple[str, str]]:
    """One run per config.json of test_faults_runs.CONFIGS: its name -> (what the CLI says
    is wrong, as the library words it; the phrase the table expects)."""
    said = {}
    for case, text, phrase in CONFIGS:
        run = fake_run(runs_dir, re.sub(r"\W+", "-", case), records=5)
        if isinstance(text, bytes):
            run.config_path.write_bytes(text)
        else:
            run.config_path.write_text(text)
        with pytest.raises(ConfigError) as info:
            run.read_config()
        said[run.path.name] = (str(info.value), phrase)
    return said


def test_dashboard_says_what_is_wrong_with_a_hand_edited_config(runs_dir):
    said = hand_edited_runs(runs_dir)
    at = app()
    for name, (message, phrase) in said.items():
        at.selectbox(key="run").set_value(name)
        at.run()
        assert not at.exception, name
        warning = texts(at, "warning")
        assert f"Its configuration is invalid.** {message}" in warning and phrase in warning
    at.switch_page("views/runs.py").run()
    assert not at.exception
    for name, (message, _) in said.items():
        assert f"**{name}**: {message}" in texts(at, "warning")


def test_read_only_dashboard_says_it_without_server_paths(runs_dir, monkeypatch):
    monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    said = hand_edited_runs(runs_dir)
    at = app()
    name = next(n for n, (m, _) in said.items() if "unknown TrainConfig keys" in m)
    at.selectbox(key="run").set_value(name)
    at.run()
    warning = texts(at, "warning")
    assert f"{name}/config.json" in warning and "unknown TrainConfig keys ['gamam']" in warning
    assert str(runs_dir) not in warning
    at.switch_page("views/runs.py").run()
    warnings = texts(at, "warning")
    assert all(f"**{n}**: " in warnings for n in said) and str(runs_dir) not in warnings


STALE_LOG = (
    "error: runs/stale is not writable (read-only or permission denied): the metrics.jsonl "
    "line of step 82 could not be written. Make the folder writable, then resume with "
    "--resume runs/stale; the last complete checkpoint is kept.\n"
)


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_running_status_of_an_ended_trainer_shows_failed(runs_dir, monkeypatch, read_only):
    """A folder turned read-only: status.json still says running, the trainer has ended and
    its last words went to the log. The page shows a failed run and why, never a live one."""
    if read_only:
        monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    run = fake_run(runs_dir, "stale", state="running", pid=dead_pid())
    (run.path / launch.LOG_FILE).write_text(STALE_LOG)
    assert run.read_status()["state"] == "running"
    at = app()
    assert not at.exception
    error = texts(at, "error")
    assert "This run failed.** the training process ended without recording why" in error
    assert "failed" in texts(at, "markdown") and "running" not in texts(at, "markdown")
    assert not [b for b in at.button if b.key and b.key.startswith("stop::")]
    logged = "is not writable" in "\n".join(c.value for c in at.code)
    assert logged is not read_only  # a public page shows no server log
    at.switch_page("views/runs.py").run()
    assert list(at.dataframe[0].value["status"]) == ["✗ failed"]

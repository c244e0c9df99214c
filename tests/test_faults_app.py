"""The dashboard with damaged runs: garbage in metrics.jsonl, a config.json edited by hand into
something invalid (shown with the library's message), a run folder deleted while the page shows
it, a "running" status left by a trainer that could not write its end. The page keeps working.
And the read-only dashboard (with the explorer it frames) refuses every request that would
start, stop, delete or read outside its folders."""

import html
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from streamlit.testing.v1 import AppTest
from test_app import FOLDER, MAIN, TIMEOUT, app, fake_run, plotly_spec, shown, texts
from test_faults_runs import CONFIGS

from began_core.config import ConfigError
from began_core.runs import launch
from began_core.runs.run_dir import RunDir

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


def test_a_run_folder_whose_name_is_not_utf8_breaks_no_page(runs_dir):
    fake_run(runs_dir, "good", records=10)
    odd = os.fsdecode(b"caf\xe9-run")  # Latin-1 bytes: not UTF-8
    fake_run(runs_dir, odd, records=10)
    at = app()
    assert not at.exception
    assert at.selectbox(key="run").options == ["caf\\xe9-run", "good"]
    at.selectbox(key="run").set_value("caf\\xe9-run").run()
    assert not at.exception and "caf\\xe9-run" in texts(at, "markdown")
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert list(at.dataframe[0].value["run"]) == ["caf\\xe9-run", "good"]
    assert len(at.get("image")) == 2


# A folder name holding what Markdown, HTML and Streamlit's :colour[] and $math$ would format
# (no closing tags: a folder name cannot hold a slash).
MARKUP_NAME = "**bold** _it_ [link](x) <b>tag <i>em $x$ :red[r] ~s~ #1 a\\b `c` &amp;"


def test_a_run_named_in_markdown_and_html_is_shown_as_it_is_spelled(runs_dir):
    fake_run(runs_dir, "plain", records=10)
    marked = fake_run(runs_dir, MARKUP_NAME, records=10)
    marked.config_path.write_text("[1, 2]")  # so that a warning names it too
    at = app()
    at.selectbox(key="run").set_value(MARKUP_NAME).run()
    assert not at.exception
    header = next(m.value for m in at.markdown if m.value.startswith("#### "))
    assert shown(header.splitlines()[0]) == f"#### {MARKUP_NAME}"
    assert MARKUP_NAME in texts(at, "warning")
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert MARKUP_NAME in list(at.dataframe[0].value["run"])  # a table: text as it is
    assert f"{MARKUP_NAME}: " in texts(at, "warning")
    at.multiselect(key="compare").set_value([MARKUP_NAME, "plain"]).run()
    legend = {t["name"] for t in plotly_spec(at)["data"] if t.get("showlegend")}
    escaped = html.escape(f"{MARKUP_NAME} (γ=", quote=False)  # plotly reads tags and entities
    assert any(name.startswith(escaped) for name in legend)


def test_a_markdown_run_name_reads_as_spelled_in_the_browser(tmp_path):
    """What Streamlit's renderer (with its :colour[] and $math$ extensions) and plotly draw,
    in chromium: the Train header and the compare legend show the name's own characters."""
    test_browser = pytest.importorskip("test_browser")  # skips without Playwright
    if not test_browser.CHROMIUM.exists():
        pytest.skip("needs Debian's chromium")
    with test_browser.dashboard(tmp_path) as (url, runs, _):
        fake_run(runs, "plain", records=10)
        fake_run(runs, MARKUP_NAME, records=10)
        with test_browser.browser_page(f"{url}/?run={urllib.parse.quote(MARKUP_NAME)}") as page:
            main = page.get_by_test_id("stMain")
            heading = main.locator("h4 [data-heading-text]").first  # beside it, its anchor
            heading.wait_for()
            assert heading.inner_text() == MARKUP_NAME
            assert heading.locator("*").count() == 0  # text alone: no bold, link, tag or maths
            page.get_by_role("link", name="Runs & compare").click()
            page.get_by_text("Compare runs").wait_for()
            page.locator(".legendtext").first.wait_for()
            legend = page.locator(".legendtext").all_text_contents()
            assert f"{MARKUP_NAME} (γ=0.5)" in legend
            caption = f"{MARKUP_NAME} (γ=0.5), step 80"
            images = main.get_by_test_id("stImageCaption")
            images.filter(has_text=caption).first.wait_for()  # the grids come after the plot
            assert caption in images.all_inner_texts()  # a caption is plain text


def test_dashboard_says_what_is_wrong_with_a_hand_edited_config(runs_dir):
    said = hand_edited_runs(runs_dir)
    at = app()
    for name, (message, phrase) in said.items():
        at.selectbox(key="run").set_value(name)
        at.run()
        assert not at.exception, name
        warning = texts(at, "warning")
        assert f"Its configuration is invalid. {message}" in warning and phrase in warning
    at.switch_page("views/runs.py").run()
    assert not at.exception
    for name, (message, _) in said.items():
        assert f"{name}: {message}" in texts(at, "warning")


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
    assert all(f"{n}: " in warnings for n in said) and str(runs_dir) not in warnings


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
    assert "This run failed. the training process ended without recording why" in error
    assert "failed" in texts(at, "markdown") and "running" not in texts(at, "markdown")
    assert not [b for b in at.button if b.key and b.key.startswith("stop::")]
    logged = "is not writable" in "\n".join(c.value for c in at.code)
    assert logged is not read_only  # a public page shows no server log
    at.switch_page("views/runs.py").run()
    assert list(at.dataframe[0].value["status"]) == ["✗ failed"]


# ---------------------------------------------------------------- read-only mode refuses

READ_ONLY_SAYS = "it starts, stops and deletes nothing"


def files(*roots) -> dict[str, tuple[int, int]]:
    """Every file under `roots` with its size and modification time: what a refused request
    must leave as it was."""
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fill_launch_form(at, outside) -> None:
    at.text_input(key="run_name").input("intruder")
    at.button(key="FormSubmitter:launch-Start training").click()


def fill_launch_form_outside(at, outside) -> None:
    at.selectbox(key="data").set_value(FOLDER).run()
    at.text_input(key="data_path").input(str(outside))
    fill_launch_form(at, outside)


def click_stop(at, outside) -> None:
    at.selectbox(key="run").set_value("live").run()
    at.button(key="stop::live").click()


def click_resume(at, outside) -> None:
    at.selectbox(key="run").set_value("paused").run()
    at.number_input(key="resume_steps::paused").set_value(500)
    at.button(key="resume::paused").click()


def click_delete(at, outside) -> None:
    at.selectbox(key="run").set_value("paused").run()
    at.button(key="delete::paused").click()


# (request, the widget events a client sends, what acting on it would do)
REQUESTS = [
    ("start a run from the form", fill_launch_form, "spawn"),
    ("start a run on a folder outside", fill_launch_form_outside, "read outside"),
    ("stop a running run", click_stop, "stop"),
    ("resume a stopped run", click_resume, "spawn"),
    ("delete a run", click_delete, "delete"),
]


@pytest.fixture
def live_trainer():
    """A process that passes for a live trainer (its command line names began_core)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "began_core"])
    yield proc
    proc.kill()
    proc.wait(timeout=30)


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "writable"])
@pytest.mark.parametrize(("send", "acts"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS])
def test_read_only_refuses_every_start_stop_and_delete(
    runs_dir, tmp_path, monkeypatch, live_trainer, send, acts, read_only
):
    """The widget events of every action that starts, stops or deletes, sent as a client
    can send them (forged: a read-only page never draws these widgets), reach nothing and
    change no file; the page says it is read-only. Writable, the same events act, which is
    what makes the read-only case mean something."""
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (32, 32)).save(outside / "a.png")
    fake_run(runs_dir, "paused", state="stopped")
    fake_run(runs_dir, "live", state="running", pid=live_trainer.pid)
    done = []
    monkeypatch.setattr(launch, "_spawn", lambda run, args: done.append("spawn") or 1)
    real_check = launch.check_data
    monkeypatch.setattr(
        launch, "check_data", lambda s, *a: done.append(f"read {s}") or real_check(s, *a)
    )
    at = app()
    assert launch.run_state(RunDir(runs_dir / "live")) == "running"
    send(at, outside)
    done.clear()
    before = files(runs_dir, outside)
    if read_only:
        monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    at.run()
    # (Writable, Stop's fragment rerun fails under AppTest, which reruns the whole page.)
    assert not at.exception or not read_only
    stopped = live_trainer.poll() is not None or RunDir(runs_dir / "live").stop_requested()
    happened = {
        "spawn": "spawn" in done,
        "read outside": f"read {outside}" in done,
        "stop": stopped,
        "delete": not (runs_dir / "paused").exists(),
    }
    assert happened[acts] is not read_only
    if read_only:
        assert READ_ONLY_SAYS in texts(at.sidebar, "info")
        assert done == [] and not stopped and files(runs_dir, outside) == before


def test_read_only_reads_no_run_outside_its_folder(runs_dir, tmp_path, monkeypatch):
    """A link naming a run outside the runs folder (?run=../secret) shows a run of its own."""
    monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    fake_run(runs_dir, "shown")
    fake_run(tmp_path, "secret", gamma=0.9)
    for asked in ("../secret", str(tmp_path / "secret"), "shown/../../secret"):
        at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
        at.query_params["run"] = asked
        at.run()
        assert not at.exception
        assert at.selectbox(key="run").value == "shown" and at.query_params["run"] == "shown"
        assert "secret" not in texts(at, "markdown") and "0.9" not in texts(at, "markdown")


def test_read_only_classroom_starts_and_writes_nothing(runs_dir, tmp_path, monkeypatch):
    """The Classroom trains its toy inside the page: every button, and no process, no file."""
    monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    fake_run(runs_dir, "shown")
    before = files(tmp_path)
    at = app().switch_page("views/classroom.py").run()
    keys = [b.key for b in at.button if b.key]
    assert len(keys) >= 3
    for key in keys:
        at.button(key=key).click().run()
        assert not at.exception, key
    assert files(tmp_path) == before and not launch._children


def test_explorer_reads_no_folder_outside_its_lists(tmp_path, monkeypatch):
    """A name typed into the explorer (a public page) that is also a local folder's path is
    taken as a Hub repo id: no local checkpoint outside its lists is loaded, and no error
    tells which folders exist."""
    from app import explorer_model
    from began_core.checkpoints import hub
    from began_core.config import ModelConfig
    from began_core.nn.model import BEGAN

    monkeypatch.chdir(tmp_path)
    model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))
    hub.save_pretrained(model, tmp_path / "elsewhere" / "ckpt")
    asked = []

    def offline(repo_id, revision):
        asked.append((repo_id, revision))
        raise hub.CheckpointError(f"{repo_id} is not on the Hub")

    monkeypatch.setattr(hub, "_load_hub", offline)
    ex = explorer_model.Explorer(tmp_path / "pretrained", tmp_path / "runs")
    said = []
    for key in ("elsewhere/ckpt", "elsewhere/none", "nowhere/none"):
        with pytest.raises(hub.CheckpointError) as info:
            ex.model(key)
        said.append(str(info.value).replace(key, "KEY"))
    assert asked == [("elsewhere/ckpt", None), ("elsewhere/none", None), ("nowhere/none", None)]
    assert said == ["KEY is not on the Hub"] * 3  # an existing folder reads like any other
    assert hub.load("elsewhere/ckpt").config == model.config  # the CLI still loads it by path


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "call, said",
    [
        (lambda ex, k: ex.slider_z(k, NAN), "seed must be a whole number"),
        (lambda ex, k: ex.generate(k, 3, [NAN] * 4, [0.0]), "z[0] must be a finite number"),
        (lambda ex, k: ex.generate(k, 3, [0.0], [INF]), "PC1 must be a finite number, got inf"),
        (lambda ex, k: ex.generate(k, -INF, [0.0], [0.0]), "seed must be a whole number"),
        (lambda ex, k: ex.grid(k, 0, NAN), "samples must be a finite number, got nan"),
        (lambda ex, k: ex.grid(k, 2**32 - 2, 8), "too large for 8 samples"),
        (lambda ex, k: ex.interpolation(k, 0, INF, 8, "linear"), "to seed must be a whole"),
        (lambda ex, k: ex.interpolation(k, 0, 1, NAN, "linear"), "frames must be a finite"),
        (lambda ex, k: ex.dataset_image(k, NAN), "image number must be a finite number"),
        (lambda ex, k: ex.mirror(k, np.zeros((32, 32, 3), np.uint8), 8, INF, 1), "Adam steps"),
        (lambda ex, k: ex.gamma([k, k], NAN, 4), "seed must be a whole number"),
        (lambda ex, k: ex.gamma([k, k], 0, "8"), "samples must be a number, got '8'"),
    ],
)
def test_explorer_refuses_nan_and_infinity_on_every_endpoint(call, said):
    """A NaN slider value (Gradio lets one through, and so does a direct API call) once came back
    as an all-black picture reported as a success; each endpoint now names the bad value."""
    from app import explorer_model

    root = MAIN.parent.parent
    ex = explorer_model.Explorer(root / "pretrained", root / "none", allow_hub=False)
    key = ex.default_choice()
    assert key is not None
    with pytest.raises(ValueError) as info:
        call(ex, key)
    assert said in str(info.value)

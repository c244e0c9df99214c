"""The dashboard's page logic, driven by streamlit.testing.v1.AppTest (no browser).

Runs are faked by writing run directories the way the trainer does (runs.RunDir), except in
the last test, which launches and stops a real tiny run from the page.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from streamlit.testing.v1 import AppTest

from began_core.cli.main import build_parser, resolve_config
from began_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from began_core.runs import launch
from began_core.runs.run_dir import LAUNCH_FILE, RunDir

from conftest import dead_pid

pytestmark = pytest.mark.usefixtures("end_launched_children")

MAIN = Path(__file__).resolve().parent.parent / "app" / "main.py"
FOLDER = "Folder or .zip on disk…"
TIMEOUT = 60  # one script run, on a loaded machine; the first imports torch


def app() -> AppTest:
    return AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run()


def trained(args: list[str]) -> RunConfig:
    """The config `train` makes of the flags the form launched with (as the CLI resolves them)."""
    return resolve_config(build_parser().parse_args(["train", "--out", "x", *args]))


def fake_run(
    root: Path,
    name: str,
    *,
    gamma: float = 0.5,
    state: str = "finished",
    pid: int | None = None,
    records: int = 40,
    samples: tuple[int, ...] = (0, 40, 80),
) -> RunDir:
    """A run directory as the trainer leaves it, without training."""
    run = RunDir(root / name)
    run.create()
    config = RunConfig(
        model=ModelConfig(n=8),
        train=TrainConfig(gamma=gamma, steps=2 * records, log_every=2),
        data=DataConfig(source="shapes"),
    )
    run.write_config(config)
    for i in range(1, records + 1):
        L_x, L_G = 0.5 / i**0.3, gamma * 0.5 / i**0.3 * (1 + 0.2 / i)
        run.append_metrics(
            {
                "step": 2 * i,
                "k_t": min(1.0, 0.001 * i),
                "L_x": L_x,
                "L_G": L_G,
                "L_D": L_x,
                "M_global": L_x + abs(gamma * L_x - L_G),
                "balance": gamma * L_x - L_G,
                "lr": 1e-4,
                "images_per_s": 50.0,
                "steps_per_s": 3.0,
                "eta_s": 10.0,
                "wall_time": float(i),
            }
        )
    if state in ("finished", "stopped"):
        (run.checkpoints_dir / f"step_{2 * records:07d}").mkdir()  # enough for checkpoints()
    for step in samples:
        Image.new("RGB", (274, 274), (200, 100, 50)).save(run.sample_path(step))
    status = {"state": state, "pid": pid or 1, "step": 2 * records, "steps": 2 * records}
    run.status_path.write_text(json.dumps({**status, "updated": time.time()}))
    return run


def texts(at: AppTest, kind: str) -> str:
    """The text of every element of a kind, as the page shows it (see `shown`)."""
    return "\n".join(shown(str(e.value)) for e in getattr(at, kind))


ESCAPE_OR_BOLD = re.compile(r"\\([!-/:-@\[-`{-~])|\*\*")


def shown(markdown: str) -> str:
    """Markdown's text as the page shows it, for what the dashboard writes around names and
    messages: backslash escapes resolved (CommonMark's, of any ASCII punctuation) and bold
    markers dropped. A name the page escaped reads as it is spelled; one it did not escape
    loses its stars, so a test of a Markdown name sees the difference."""
    return ESCAPE_OR_BOLD.sub(lambda m: m.group(1) or "", markdown)


def plotly_spec(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


# --------------------------------------------------------------------------- launching


def test_empty_dashboard_offers_the_launch_form(runs_dir):
    at = app()
    assert not at.exception
    assert "No runs yet" in texts(at, "info")
    assert at.selectbox(key="data").value == "fluent-faces"
    assert at.number_input(key="filters").value == 16
    assert at.number_input(key="steps").value == 1500
    assert at.number_input(key="gamma").value == 0.5
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def submit(at: AppTest) -> AppTest:
    return at.button(key="FormSubmitter:launch-Start training").click().run()


@pytest.mark.faults  # the 7 form values among the hostile inputs
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"data": FOLDER, "data_path": "no/such/folder"}, "not found: no such file or folder"),
        ({"data": FOLDER, "data_path": ""}, "choose a built-in dataset or give a folder"),
        ({"data": FOLDER, "data_path": "EMPTY"}, "no images found in the folder"),
        ({"gamma": 0.0}, "gamma must be in (0, 1]"),
        ({"lr": 0.0}, "lr and lr_min must be positive"),
        ({"lambda_k": 0.0}, "lambda_k must be positive"),
        ({"run_name": "my run/1"}, "run name"),
    ],
)
def test_bad_input_shows_a_message_and_starts_nothing(runs_dir, tmp_path, setup, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    at = app()
    for key, value in setup.items():
        if key == "data":
            at.selectbox(key="data").set_value(value)
            at.run()
        elif key in ("data_path", "run_name"):
            at.text_input(key=key).input(str(empty) if value == "EMPTY" else value)
        else:
            at.number_input(key=key).set_value(value)
    at = submit(at)
    assert not at.exception
    assert message in texts(at.sidebar, "error")
    assert not runs_dir.exists() or not any(runs_dir.iterdir())
    assert not launch._children


def test_automatic_run_names_are_valid(runs_dir, monkeypatch):
    started = []
    monkeypatch.setattr(launch, "start_run", lambda path, args: started.append((path, args)))
    at = app()
    at.selectbox(key="data").set_value("fluent-faces@full")
    at.run()
    at = submit(at)
    assert not at.error and len(started) == 1
    path, args = started[0]
    assert path.parent == runs_dir and path.name.startswith("fluent-faces-full-g0.5-n16-")
    assert args[:2] == ["--preset", "faces-32"]  # recorded in the run's config.json
    assert trained(args).data.source == "fluent-faces@full" and "--filters" in args


@pytest.mark.parametrize(("choice", "expected"), [(None, "2"), (1, "1")])
def test_the_eta_choice_reaches_the_trainer(runs_dir, monkeypatch, choice, expected):
    # The form defaults to eta 2 (on the built-in data k_t stays at 0 with eta 1 at gamma 0.5).
    started = []
    monkeypatch.setattr(launch, "start_run", lambda path, args: started.append((path, args)))
    at = app()
    if choice is not None:
        at.selectbox(key="eta").set_value(choice)
    at = submit(at)
    assert not at.error and len(started) == 1
    assert trained(started[0][1]).train.eta == int(expected)


def test_a_taken_run_name_is_refused(runs_dir):
    fake_run(runs_dir, "taken")
    at = app()
    at.selectbox(key="data").set_value("shapes")
    at.run()
    at.text_input(key="run_name").input("taken")
    at = submit(at)
    assert "already exists" in texts(at.sidebar, "error")
    assert not launch._children


# --------------------------------------------------------------------------- live view


def test_live_view_of_a_finished_run(runs_dir):
    fake_run(runs_dir, "g05", records=40)
    at = app()
    assert not at.exception
    assert at.selectbox(key="run").value == "g05"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ETA"] == "—" and metrics["Images/s"] == "50"
    assert at.get("progress")[0].proto.text == "Step 80 of 80 · 0:40 elapsed"
    assert metrics["k_t"] == "0.0400"
    assert "finished" in texts(at, "markdown")
    assert "γ = 0.5 · λₖ = 0.001 · η = 1 ·" in texts(at, "markdown")  # the run's header

    spec = plotly_spec(at)
    names = {t.get("name") for t in spec["data"]}
    assert {"L(x)", "L(G(z))", "γ·L(x), γ = 0.5", "M<sub>global</sub>"} <= names
    assert all(len(t["x"]) == 40 for t in spec["data"])
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert any("Balance" in t for t in titles) and any("Learning rate" in t for t in titles)
    assert "40 points" in texts(at, "caption")

    explain = texts(at, "markdown")
    assert "k_{t+1} = \\text{clip}" in explain and "M_\\text{global}" in explain
    assert "\\gamma = 0.5" in explain and "At the last record:" in explain

    at.toggle(key="log_y").set_value(True)
    at.slider(key="smoothing").set_value(0.0)
    at.run()
    spec = plotly_spec(at)
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert len(spec["data"]) < 15  # no faint raw curves without smoothing

    grid = at.select_slider(key="grid::g05")
    assert grid.options == ["0", "40", "80"] and grid.value == 80
    assert "step 80 (newest)" in at.get("image")[0].captions[0]
    grid.set_value(40).run()
    assert "step 40" in at.get("image")[0].captions[0]
    labels = {b.label for b in at.button}
    assert {"Resume training", "Delete for good"} <= labels and "Stop" not in labels


def test_grid_slider_follows_new_grids_unless_moved_back(runs_dir):
    run = fake_run(runs_dir, "r", samples=(0, 40))
    at = app()
    assert at.select_slider(key="grid::r").value == 40
    Image.new("RGB", (274, 274)).save(run.sample_path(80))
    at.run()
    assert at.select_slider(key="grid::r").value == 80  # followed the newest
    at.select_slider(key="grid::r").set_value(0).run()
    Image.new("RGB", (274, 274)).save(run.sample_path(120))
    at.run()
    assert at.select_slider(key="grid::r").value == 0  # stayed where the user put it


def test_grids_of_G_ema_are_shown_on_request_and_say_so(runs_dir):
    run = fake_run(runs_dir, "e", samples=(0, 40))
    for step in (0, 40):
        path = run.sample_path(step, "G_ema")
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (274, 274), (0, 0, 0)).save(path)
    at = app()
    radio = at.radio(key="grid::e::generator")
    assert radio.options == ["G", "G_ema"] and radio.value == "G"
    assert at.get("image")[0].captions[0].startswith("G(z) at step 40")
    radio.set_value("G_ema").run()
    assert at.get("image")[0].captions[0].startswith("G_ema(z) at step 40")


def test_killed_run_shows_failed_with_the_tail_of_its_log(runs_dir):
    gone_pid = dead_pid()
    run = fake_run(runs_dir, "killed", state="running", pid=gone_pid)
    (run.path / launch.LOG_FILE).write_text("step 78/80 k_t=0.0780\nRuntimeError: out of memory\n")
    fake_run(runs_dir, "fine")
    at = app()
    at.selectbox(key="run").set_value("killed").run()
    assert not at.exception
    assert "This run failed" in texts(at, "error")
    assert "out of memory" in texts(at, "code")
    assert "failed" in texts(at, "markdown")  # the badge
    at.selectbox(key="run").set_value("fine").run()  # the page keeps working
    assert not at.error and not at.exception


def test_run_that_failed_to_start_shows_its_error(runs_dir):
    gone_pid = dead_pid()
    run = RunDir(runs_dir / "nodata")  # what start_run leaves when the trainer exits at once
    run.path.mkdir(parents=True)
    (run.path / LAUNCH_FILE).write_text(json.dumps({"pid": gone_pid}))
    (run.path / launch.LOG_FILE).write_text("error: dataset 'nowhere' not found\n")
    at = app()
    assert at.selectbox(key="run").value == "nodata"
    assert "not found" in texts(at, "error")
    assert not at.get("plotly_chart") and not at.exception
    assert "Delete for good" in {b.label for b in at.button}


def test_a_starting_run_shows_what_it_is_doing_now(runs_dir):
    run = RunDir(runs_dir / "big")  # launched, its trainer not yet at step 0
    run.path.mkdir(parents=True)
    # A live process that reads as a trainer (the launcher checks its command line).
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "began_core"])
    try:
        launched = {"pid": trainer.pid, "started": time.time()}
        (run.path / LAUNCH_FILE).write_text(json.dumps(launched))
        log = (
            "listing the images in /data/faces\ndecoding: 10%| 300/3000\rdecoding: 45%| 1350/3000\n"
        )
        (run.path / launch.LOG_FILE).write_text(log)
        at = app()
        assert "Starting: decoding: 45%| 1350/3000" in texts(at, "info")
        (run.path / launch.LOG_FILE).write_text(log + "compiling the fast ELU kernel\n")
        at.run()
        assert "Starting: compiling the fast ELU kernel" in texts(at, "info")
        assert not at.exception
    finally:
        trainer.kill()
        trainer.wait()


def test_delete_from_the_page(runs_dir):
    fake_run(runs_dir, "old", state="stopped")
    at = app()
    at.button(key="delete::old").click().run()
    assert not (runs_dir / "old").exists()
    assert "No runs yet" in texts(at, "info")


def test_resume_from_the_page(runs_dir, monkeypatch):
    fake_run(runs_dir, "paused", state="stopped")
    calls = []
    monkeypatch.setattr(launch, "resume_run", lambda r, steps: calls.append((r.path.name, steps)))
    at = app()
    at.number_input(key="resume_steps::paused").set_value(500)
    at.button(key="resume::paused").click().run()
    assert calls == [("paused", 500)]
    assert not at.exception


# --------------------------------------------------------------------------- runs, read-only


def test_runs_page_lists_and_overlays_runs(runs_dir):
    for gamma in (0.3, 0.5, 0.7):
        fake_run(runs_dir, f"gamma{gamma}", gamma=gamma)
        time.sleep(0.02)  # distinct creation times: newest first
    at = app()
    at.switch_page("views/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == ["gamma0.7", "gamma0.5", "gamma0.3"]
    assert all("finished" in s for s in table["status"])
    assert at.multiselect(key="compare").value == ["gamma0.7", "gamma0.5", "gamma0.3"]
    spec = plotly_spec(at)
    legend = {t["name"] for t in spec["data"] if t.get("showlegend")}
    assert legend == {"gamma0.7 (γ=0.7)", "gamma0.5 (γ=0.5)", "gamma0.3 (γ=0.3)"}
    assert len(at.get("image")) == 3
    at.multiselect(key="compare").set_value(["gamma0.3"]).run()
    assert len(at.get("image")) == 1
    assert "No shipped checkpoints" in texts(at, "caption")


def test_shipped_checkpoints_are_listed_with_samples(runs_dir, tmp_path):
    from began_core.checkpoints.hub import save_pretrained
    from began_core.nn.model import BEGAN

    root = tmp_path / "pretrained"
    good = save_pretrained(BEGAN(ModelConfig(n=8, Nh=16, Nz=16)), root / "began-tiny-32")
    (good / "README.md").write_text("---\nlicense: mit\n---\n# BEGAN, tiny\nA card.\n")
    other = root / "classifier"  # another kind of model: not listed
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"classes": 18}))
    broken = root / "broken"  # a BEGAN config without weights: listed, without samples
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"resolution": 32, "n": 8}))
    at = app()
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert [shown(e.label) for e in at.expander] == ["began-tiny-32", "broken"]  # Markdown
    assert "# BEGAN, tiny" in texts(at, "markdown")
    assert "license: mit" not in texts(at, "markdown")
    images = at.get("image")
    assert len(images) == 1 and "64 samples" in images[0].captions[0]
    assert "No samples" in texts(at, "caption")  # the broken one, and the page goes on


def test_open_a_run_from_the_runs_page(runs_dir):
    fake_run(runs_dir, "first")
    time.sleep(0.02)
    fake_run(runs_dir, "second")
    at = app()
    assert at.selectbox(key="run").value == "second"
    at.switch_page("views/runs.py").run()
    at.selectbox(key="watch").set_value("first").run()
    at.button[0].click().run()
    assert not at.exception
    assert at.selectbox(key="run").value == "first"
    assert at.query_params["run"] == "first"  # a reload shows the same run


def test_deployment_binds_locally_unless_told(runs_dir):
    root = MAIN.parent.parent
    procfile = (root / "Procfile").read_text()
    assert procfile.startswith("web: ") and "streamlit run app/main.py" in procfile
    assert "--server.port ${PORT" in procfile and "${HOST:-127.0.0.1}" in procfile
    assert "BEGAN_READ_ONLY=${BEGAN_READ_ONLY:-1}" in procfile
    config = (root / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in config and "gatherUsageStats = false" in config


def test_read_only_mode_shows_runs_but_launches_nothing(runs_dir, monkeypatch):
    monkeypatch.setenv("BEGAN_READ_ONLY", "1")
    fake_run(runs_dir, "shown", state="stopped")
    at = app()
    assert not at.exception
    assert "Read-only" in texts(at.sidebar, "info")
    assert not at.sidebar.number_input and not at.text_input and not at.button
    assert at.selectbox(key="run").value == "shown" and at.get("plotly_chart")
    assert [e.label for e in at.expander] == ["Configuration"]  # no server paths, no log
    assert "meta" not in at.json[0].value
    at.switch_page("views/runs.py").run()
    assert not at.exception and at.dataframe


# --------------------------------------------------------------------------- a real run


def test_launch_and_stop_a_real_run_from_the_page(runs_dir):
    at = app()
    at.selectbox(key="data").set_value("shapes")
    at.run()
    at.number_input(key="filters").set_value(8)
    at.number_input(key="steps").set_value(5000)
    at.number_input(key="log_every").set_value(2)
    at.text_input(key="run_name").input("tiny")
    at = submit(at)
    assert not at.exception and "Started tiny." in texts(at.sidebar, "success")
    assert at.selectbox(key="run").value == "tiny"
    run = RunDir(runs_dir / "tiny")
    assert run.path.is_dir()

    deadline = time.monotonic() + 120
    while not (launch.run_state(run) == "running" and run.read_metrics()):
        assert time.monotonic() < deadline, launch.log_tail(run)
        time.sleep(0.2)
    at.run()
    assert "running" in texts(at, "markdown")
    at.button(key="stop::tiny").click().run()
    while launch.run_state(run) != "stopped":
        assert time.monotonic() < deadline, launch.log_tail(run)
        time.sleep(0.2)
    at.run()
    assert "stopped" in texts(at, "markdown")
    assert run.latest_checkpoint() is not None
    assert {"Resume training", "Delete for good"} <= {b.label for b in at.button}


def test_explore_page_serves_the_explorer(runs_dir, monkeypatch):
    """The Explore tab starts the Gradio explorer once and frames it; the server answers."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GRADIO_SERVER_PORT", str(port))
    explore = MAIN.parent / "views" / "explore.py"
    at = AppTest.from_file(str(explore), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    url = texts(at, "caption").split("Served at ")[-1].strip()
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "config", timeout=30) as r:
        assert r.status == 200 and b"components" in r.read()


# --------------------------------------------------------------------------- small data


def test_small_data_options_reach_the_trainer(runs_dir, monkeypatch):
    started = []
    monkeypatch.setattr(launch, "start_run", lambda path, args: started.append((path, args)))
    at = submit(app())  # the measured defaults: translation + cutout at p 0.5, held out, scored
    config = trained(started[-1][1])
    assert config.data.heldout == 0.05 and config.train.score_every == 250
    assert config.train.augment == "translation,cutout" and config.train.augment_p == 0.5
    assert config.train.ema_kimg == 0  # G_ema is off by default
    at = app()
    at.number_input(key="ema_kimg").set_value(2.0)
    at = submit(at)
    assert trained(started[-1][1]).train.ema_kimg == 2.0
    at = app()
    at.multiselect(key="augment").set_value(["cutout"])
    at.number_input(key="augment_p").set_value(0.3)
    at.number_input(key="heldout").set_value(0.0)
    at.number_input(key="score_every").set_value(0)
    at = submit(at)
    config = trained(started[-1][1])
    assert config.train.augment == "cutout" and config.train.augment_p == 0.3
    assert config.data.heldout == 0 and config.train.score_every == 0  # the preset's, undone
    at = app()
    at.number_input(key="heldout").set_value(0.0)  # scoring needs held-out images
    at = submit(at)
    assert "--heldout" in texts(at.sidebar, "error") and len(started) == 3


def test_live_view_plots_the_heldout_gap_beside_M_global(runs_dir):
    run = fake_run(runs_dir, "small", records=40)
    records = run.read_metrics()
    run.metrics_path.unlink()
    for r in records:
        extra = {"L_heldout": 0.2, "L_train": 0.19, "heldout_gap": 0.01, "augment_p": 0.25}
        if r["step"] % 20 == 0:
            extra |= {"score": 100.0 - r["step"] / 10, "score_metric": "classifier_fd"}
            extra |= {"best_step": r["step"], "best_score": 100.0 - r["step"] / 10}
        run.append_metrics({**r, **extra})
    at = app()
    assert not at.exception
    small = plotly_spec(at, 1)
    names = {t.get("name") for t in small["data"]}
    assert {"held-out gap", "augmentation p", "classifier fd", "best checkpoint"} <= names
    star = next(t for t in small["data"] if t.get("name") == "best checkpoint")
    assert star["x"] == [80]
    assert "memorising" in texts(at, "caption")

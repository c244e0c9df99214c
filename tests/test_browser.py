"""The dashboard in a real browser: Playwright drives Debian's chromium against a
`streamlit run app/main.py` started here. It launches a tiny run from the page, sees the
curves gain points while it trains, stops it; it opens the Explore tab and uses the explorer
inside it on the shipped checkpoints. Screenshots go to $BEGAN_SCREENSHOTS, or a temporary
folder."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from began_core.runs import launch
from began_core.runs.run_dir import RunDir, list_runs
from tests.conftest import wait_until  # importable from bench/classroom_fps.py too

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 120_000  # generous: a loaded 2-core machine trains and serves at once

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (its browser download is not needed)"
)
pytest.importorskip("streamlit")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(tmp_path: Path, **env: str):
    """`streamlit run app/main.py` on a free local port, with its own runs folder; yields
    (url, runs folder, environment). GRADIO_SERVER_PORT names a port that only an explorer
    on a second port would open: the dashboard serves its explorer on its own port."""
    runs, port = tmp_path / "runs", free_port()
    env = dict(os.environ, BEGAN_RUNS_DIR=str(runs), BEGAN_REFRESH_S="1", **env)
    env["GRADIO_SERVER_PORT"] = str(free_port())
    env.pop("BEGAN_READ_ONLY", None)
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port)),
            *("--server.address", "127.0.0.1", "--server.headless", "true"),
            *("--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r,
        ):
            if r.status == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()}")
        time.sleep(0.3)
    try:
        yield url, runs, env
    finally:
        # The trainer outlives the server by design: end ours by its pid, gracefully or not.
        for run in list_runs(runs, starting=True):
            launch.stop_run(run)
            pid = run.read_status().get("pid")
            deadline = time.monotonic() + 30
            while launch.run_state(run) in launch.ACTIVE and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid and launch.run_state(run) in launch.ACTIVE:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def browser_page(url: str):
    """A chromium page on `url`, closed with its browser."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path):
    with dashboard(tmp_path) as started:
        yield started


@pytest.fixture
def page(server):
    """A chromium page on the dashboard, closed with its browser after the test."""
    with browser_page(server[0]) as page:
        yield page


def unreachable(port: str) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", int(port))) != 0


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ.get("BEGAN_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def curve_points(page) -> int:
    """Points in the first trace of the live figure, as plotly holds them in the page."""
    return page.evaluate(
        "() => { const p = document.querySelector('.js-plotly-plot');"
        " return p && p.data && p.data.length ? p.data[0].x.length : 0; }"
    )


def state(page, name: str):
    """The status badge (its icon's ligature comes first in its text)."""
    return page.get_by_test_id("stMain").get_by_text(re.compile(rf"(^|\s){name}$")).first


def settle(page) -> None:
    """Wait until no script runs, so a screenshot shows no stale elements."""
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden")


def test_launch_watch_and_stop_a_run_in_the_browser(server, page, screenshots):
    _, runs, _ = server
    page.get_by_text("No runs yet").wait_for()

    # The new-run panel: the tiny built-in data, a tiny model, frequent records.
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_label("Data").click()
    page.get_by_role("option", name="shapes", exact=True).click()
    sidebar.get_by_text("512 procedural").wait_for()
    fill = {"Run name": "tiny", "Filters n": "8", "Steps": "5000"}
    for label, value in fill.items():
        sidebar.get_by_label(label, exact=True).fill(value)
    sidebar.get_by_text("Logging").click()
    sidebar.get_by_label("Log every (steps)").fill("2")
    sidebar.get_by_label("Sample grid every").fill("20")
    sidebar.get_by_role("button", name="Start training").click()
    sidebar.get_by_text("Started tiny").wait_for()

    # Live: the curves gain points between two looks, without reloading the page.
    state(page, "running").wait_for()
    first = wait_until(lambda: (n := curve_points(page)) >= 2 and n, 120, "the first points")
    later = wait_until(lambda: (n := curve_points(page)) > first and n, 120, "the curves to grow")
    assert later > first
    settle(page)
    page.screenshot(path=str(screenshots / "train-live.png"), full_page=True)

    # A reload shows the same run (it is in the URL), still training.
    assert "run=tiny" in page.url
    page.reload()
    state(page, "running").wait_for()
    wait_until(lambda: curve_points(page) > later, 120, "more points after a reload")

    page.get_by_role("button", name="Stop").click()
    state(page, "stopped").wait_for()
    run = RunDir(runs / "tiny")
    assert run.read_status()["state"] == "stopped"
    assert run.latest_checkpoint() is not None
    page.get_by_role("button", name="Resume").wait_for()
    settle(page)
    page.screenshot(path=str(screenshots / "train-stopped.png"), full_page=True)

    page.get_by_role("link", name="Runs & compare").click()
    page.get_by_text("Compare runs").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_test_id("stDataFrame").locator("canvas").first.wait_for()
    settle(page)
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)


def image_src(locator) -> str:
    return locator.get_attribute("src") or ""


def test_the_explore_tab_serves_the_explorer_on_the_shipped_checkpoints(server, page, screenshots):
    page.get_by_role("link", name="Explore").click()
    frame = page.frame_locator("iframe").first
    frame.get_by_label("Checkpoint").first.wait_for()  # no second title: the page has one
    assert frame.get_by_text("BEGAN explorer").count() == 0
    # One port: the frame is a path of the dashboard's own server.
    assert page.locator("iframe").first.get_attribute("src") == "/explorer/"
    assert unreachable(server[2]["GRADIO_SERVER_PORT"])

    # Sample: the first shipped checkpoint draws G(z) for seed 0; a PCA slider moves it.
    picture = frame.locator("#sample-image img")
    picture.wait_for()
    before = image_src(picture)
    assert before
    slider = frame.locator("#pc-0 input[type=number]")
    slider.fill("2")
    slider.press("Enter")
    wait_until(lambda: image_src(picture) not in ("", before), 60, "PC1 to change G(z)")
    settle(page)
    page.screenshot(path=str(screenshots / "explore-sample.png"), full_page=True)

    # Gamma comparison (paper Figure 3): one grid per shipped gamma, captioned.
    frame.get_by_role("tab", name="Gamma comparison").click()
    frame.get_by_role("button", name="Compare").click()
    captions = frame.get_by_text(re.compile(r"^gamma 0\.[357]: diversity"))
    wait_until(lambda: captions.count() == 3, 90, "three gamma grids")
    page.screenshot(path=str(screenshots / "explore-gamma.png"), full_page=True)

    # Mirror interpolation of a dataset image: inversion, its error, the strip.
    frame.get_by_role("tab", name="Mirror interpolation").click()
    frame.get_by_role("button", name="Use this dataset image").click()
    frame.locator("#mirror-input img").wait_for()
    frame.get_by_role("button", name="Invert and interpolate").click()
    frame.get_by_text("Reconstruction error").wait_for()
    page.screenshot(path=str(screenshots / "explore-mirror.png"), full_page=True)


def test_one_port_the_explore_tab_compares_gamma_on_hub_ids(local_hub, tmp_path, screenshots):
    """Through the dashboard's port alone (the explorer's own port closed): load the three
    shipped generators by Hub id (one pinned to its revision) from the local Hub, where the
    push command put them, drive a slider, and compare gamma on the three."""
    from began_core.cli.main import main

    ids = []
    for folder in sorted((ROOT / "pretrained").glob("fluent-faces-*-gamma*")):
        assert main(["push", str(folder), f"alice/{folder.name}"]) == 0
        ids.append(f"alice/{folder.name}")
    ids[1] += "@" + local_hub.repos[ids[1]].branches["main"]
    empty = tmp_path / "no-pretrained"
    empty.mkdir()
    with (
        dashboard(tmp_path, BEGAN_PRETRAINED_DIR=str(empty)) as (url, _, env),
        browser_page(url) as page,
    ):
        page.get_by_role("link", name="Explore").click()
        frame = page.frame_locator("iframe").first
        frame.get_by_label("Checkpoint").first.wait_for()  # no second title: the page has one
        assert unreachable(env["GRADIO_SERVER_PORT"])
        for repo_id in ids:
            frame.get_by_label("or a Hugging Face Hub repo id").fill(repo_id)
            frame.get_by_role("button", name="Load from the Hub").click()
            frame.get_by_text(f"loaded {repo_id}").first.wait_for()

        picture = frame.locator("#sample-image img")
        picture.wait_for()
        before = image_src(picture)
        frame.locator("#pc-0 input[type=range]").fill("2")
        wait_until(lambda: image_src(picture) not in ("", before), 60, "a slider to move G(z)")

        frame.get_by_role("tab", name="Gamma comparison").click()
        frame.get_by_role("button", name="Compare").click()
        captions = frame.get_by_text(re.compile(r"^gamma 0\.[357]: diversity .*\(alice/"))
        wait_until(lambda: captions.count() == 3, 90, "three gamma grids from the Hub")
        settle(page)
        page.screenshot(path=str(screenshots / "explore-hub-gamma.png"), full_page=True)

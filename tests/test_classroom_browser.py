"""The Classroom page in chromium: it opens from a shared link, plays, and draws the L(v) map,
the histograms and the curves; the frame rate seen in the browser is printed."""

import re
import time

from test_browser import page, screenshots, server, settle  # noqa: F401  (fixtures)

from tests.conftest import wait_until  # importable from bench/classroom_fps.py too

SPEED = 20


def plots(tab) -> list[str]:
    """The first trace's type of every plotly figure on the page."""
    return tab.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".map(p => p.data && p.data.length ? p.data[0].type || 'scatter' : '')"
    )


def faded(tab) -> list[float]:
    """The opacity, as drawn, of each visible picture of the live view that is faded."""
    return tab.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot, [data-testid=stImage] img')]"
        ".filter(p => p.getBoundingClientRect().height > 0).map(p => { let e = p, o = 1;"
        " while (e) { o *= parseFloat(getComputedStyle(e).opacity); e = e.parentElement; }"
        " return o; }).filter(o => o < 0.9)"
    )


def step_shown(tab) -> int:
    text = tab.get_by_test_id("stMetric").filter(has_text="step").first.inner_text()
    return int(re.sub(r"\D", "", text.split("\n")[-1]) or 0)


def test_the_classroom_plays_in_the_browser(server, page, screenshots):  # noqa: F811
    url, runs, *_ = server
    page.goto(f"{url}/classroom?data=grid&seed=0&gamma=0.5&speed={SPEED}")
    page.get_by_text("Classroom: BEGAN on 2-D points").wait_for()
    plane = page.get_by_test_id("stMain").get_by_test_id("stImage").locator("img").first
    plane.wait_for()
    wait_until(lambda: plane.evaluate("i => i.complete && i.naturalWidth") == 520, 60, "the map")
    before = plane.get_attribute("src")

    page.get_by_role("button", name="Update D").click()
    wait_until(lambda: len(plots(page)) == 2, 60, "the curves after one step")
    page.get_by_role("button", name="Play").click()
    page.get_by_role("button", name="Pause").wait_for()
    started = wait_until(lambda: step_shown(page) or None, 120, "training to start")
    # The frames that follow come from the fragment's timer alone (no click).
    first = wait_until(lambda: (n := step_shown(page)) > started and n, 120, "a second frame")
    start = time.monotonic()
    time.sleep(10)
    later = step_shown(page)
    seconds = time.monotonic() - start
    frames = (later - first) / SPEED / seconds
    print(f"\nbrowser: {frames:.1f} frames/s at {SPEED} steps per frame ({later - first} steps)")
    points = page.evaluate(
        "() => { const p = document.querySelectorAll('.js-plotly-plot')[1];"
        " return p && p.data ? p.data[0].x.length : 0; }"
    )
    assert points > 1  # the curves grew
    assert plane.get_attribute("src") != before  # and the map was redrawn
    # Streamlit fades a fragment's elements while it reruns; frame after frame, the plots
    # would be faded most of the time (a third of these samples before the page said not to).
    seen = []
    for _ in range(20):
        seen += faded(page)
        page.wait_for_timeout(137)
    assert not seen, f"faded while playing: {seen}"
    page.get_by_role("button", name="Pause").click()
    page.get_by_role("button", name="Play").wait_for()
    settle(page)
    assert "seed=0" in page.url and "data=grid" in page.url
    assert not runs.exists()  # the classroom writes no run
    page.screenshot(path=str(screenshots / "classroom.png"), full_page=True)

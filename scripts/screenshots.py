"""The README's four screenshots, taken from the running dashboard in headless chromium:
Train, Runs & compare, Explore and Classroom, written to docs/screenshots/.

    python -m scripts.screenshots      # from the repository root; trains a demo run (minutes)

A module, since it uses tests/test_browser.py's server and browser. The runs shown are one
short demo run trained first, in a folder of its own: the test server stops every run of its
folder as it exits, so it never watches someone's real runs.

It starts `streamlit run app/main.py` on a free local port, as tests/test_browser.py does (and
with its helpers), on the shipped checkpoints. Needs Debian's chromium and Playwright.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
DEMO = ["--preset", "faces-32", "--filters", "16", "--steps", "600", "--sample-every", "100"]
DEMO += ["--checkpoint-every", "300", "--score-every", "300", "--quiet"]


def demo_run(runs: Path) -> None:
    """A short run of the faces recipe, small enough for a CPU: real curves and grids."""
    out = runs / "faces-32-demo"
    if not out.exists():
        command = [sys.executable, "-m", "began_core", "train", "--out", str(out), *DEMO]
        subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = parser.parse_args(argv)

    from tests.test_browser import browser_page, dashboard, settle

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        demo_run(tmp_path / "runs")  # the folder the test server watches
        with dashboard(tmp_path) as (url, _, _), browser_page(url) as page:
            page.set_viewport_size(VIEWPORT)
            page.locator(".js-plotly-plot").first.wait_for()
            settle(page)
            shots = {"train": None, "runs": "Runs & compare", "explore": "Explore"}
            shots["classroom"] = "Classroom"
            for name, link in shots.items():
                if link:
                    page.get_by_role("link", name=link).click()
                if name == "explore":
                    frame = page.frame_locator("iframe").first
                    frame.locator("#sample-image img").wait_for()
                elif name != "train":
                    page.locator(".js-plotly-plot").first.wait_for()
                settle(page)
                if name == "classroom":  # a few seconds of training, so the curves have begun
                    page.get_by_role("button", name="Play").click()
                    page.wait_for_timeout(8000)
                    page.get_by_role("button", name="Pause").click()
                    settle(page)
                page.wait_for_timeout(1500)  # the last redraws
                path = args.out / f"{name}.png"
                page.screenshot(path=str(path))
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Frames per second of the Classroom page's live part.

On the server (the default): one frame trains `speed` full BEGAN steps, measures mode
coverage on 2,500 samples and builds the three pictures (the L(v) map with points and arrows
as a PNG, the histograms and the curves as the plotly JSON that Streamlit sends). The model
runs on one thread, so its CPU time per frame is the frame time on a core nobody else uses;
the wall time shows what a shared machine gave.

In the browser (`--browser`): the whole loop a visitor sees. It starts `streamlit run
app/main.py` (read-only, on a free local port), opens the Classroom in headless chromium from
a shared link, presses Play and counts the steps the page shows over `--seconds`; frames/s
is steps / speed / seconds. The server, its frames and chromium's drawing share the machine.

    python -m bench.classroom_fps                  # 20 and 50 steps per frame, the default grid
    python -m bench.classroom_fps --speeds 20 --frames 50 --threads 2
    python -m bench.classroom_fps --browser --speeds 20 50 --seconds 10
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from app import classroom_charts as charts
from began_core.classroom import points
from began_core.classroom.began2d import Classroom
from bench.bench import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def frame(model: Classroom, speed: int) -> int:
    model.step(speed)
    model.coverage()
    png, _, _ = charts.plane_image(model)
    figures = (
        charts.histogram_figure(model),
        charts.curves_figure(model.history, model.knobs.gamma),
    )
    return len(png) + sum(len(f.to_json()) for f in figures)


def on_server(args: argparse.Namespace) -> None:
    print(
        "| steps per frame | frame, wall (ms) | frames/s, wall | frame, CPU (ms) | "
        "frames/s on a free core | steps/s on a free core | bytes per frame |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for speed in args.speeds:
        model = Classroom(points.make(args.data), seed=0)
        frame(model, speed)  # warm-up
        times, cpu, size = [], [], 0
        for _ in range(args.frames):
            start, start_cpu = time.perf_counter(), time.process_time()
            size = frame(model, speed)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        ms, cpu_ms = 1000 * statistics.median(times), 1000 * statistics.median(cpu)
        print(
            f"| {speed} | {ms:.0f} | {1000 / ms:.1f} | {cpu_ms:.0f} | {1000 / cpu_ms:.1f} | "
            f"{speed * 1000 / cpu_ms:.0f} | {size:,} |"
        )


def in_browser(args: argparse.Namespace) -> None:
    # The dashboard and chromium as the browser tests start them (tests/test_browser.py).
    from tests.conftest import wait_until
    from tests.test_browser import browser_page, dashboard
    from tests.test_classroom_browser import step_shown

    print("| steps per frame | frames/s in the browser | steps/s | steps counted | seconds |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp, dashboard(Path(tmp), BEGAN_READ_ONLY="1") as served:
        for speed in args.speeds:
            query = f"data={args.data}&seed=0&speed={speed}"
            with browser_page(f"{served[0]}/classroom?{query}") as page:
                page.get_by_role("button", name="Play").click()
                page.get_by_role("button", name="Pause").wait_for()
                started = wait_until(lambda: step_shown(page) or None, 120, "a first frame")
                first = wait_until(
                    lambda s=started: (n := step_shown(page)) > s and n, 120, "a second frame"
                )
                start = time.monotonic()
                time.sleep(args.seconds)
                steps = step_shown(page) - first
                seconds = time.monotonic() - start
                page.get_by_role("button", name="Pause").click()
            print(
                f"| {speed} | {steps / speed / seconds:.1f} | {steps / seconds:.0f} | "
                f"{steps:,} | {seconds:.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument(
        "--data", default="grid", choices=[d for d in points.DATASETS if d != "csv"]
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1)")
    parser.add_argument("--browser", action="store_true", help="the page in chromium, whole")
    parser.add_argument("--seconds", type=float, default=10, help="with --browser: counted")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{cpu_model() or platform.processor() or 'unknown'}, {torch.get_num_threads()} torch threads, data {args.data}"
    )
    (in_browser if args.browser else on_server)(args)


if __name__ == "__main__":
    main()

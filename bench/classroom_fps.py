"""Frames per second of the Classroom page's live part, on the server: one frame trains
`speed` full BEGAN steps, measures mode coverage on 2,500 samples and builds the three
figures (the L(v) map with points and arrows, the histograms, the curves) as the JSON that
Streamlit sends. The browser's drawing is not included (the chromium test measures the
whole loop).

    python bench/classroom_fps.py                  # 20 and 50 steps per frame, ring
    python bench/classroom_fps.py --speeds 20 --frames 50 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import classroom_charts as charts
from began_core import points
from began_core.classroom import Classroom


def frame(model: Classroom, speed: int) -> int:
    model.step(speed)
    model.coverage()
    figures = (
        charts.plane_figure(model),
        charts.histogram_figure(model),
        charts.curves_figure(model.history, model.knobs.gamma),
    )
    return sum(len(f.to_json()) for f in figures)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument(
        "--data", default="ring", choices=[d for d in points.DATASETS if d != "csv"]
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, {torch.get_num_threads()} torch threads, data {args.data}")
    print("| steps per frame | frame (ms), median | frames/s | steps/s | bytes per frame |")
    print("| --- | --- | --- | --- | --- |")
    for speed in args.speeds:
        model = Classroom(points.make(args.data), seed=0)
        frame(model, speed)  # warm-up
        times, size = [], 0
        for _ in range(args.frames):
            start = time.perf_counter()
            size = frame(model, speed)
            times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        print(f"| {speed} | {ms:.0f} | {1000 / ms:.1f} | {speed * 1000 / ms:.0f} | {size:,} |")


if __name__ == "__main__":
    main()

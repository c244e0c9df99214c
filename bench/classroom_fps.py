"""Frames per second of the Classroom page's live part, on the server: one frame trains
`speed` full BEGAN steps, measures mode coverage on 2,500 samples and builds the three
pictures (the L(v) map with points and arrows as a PNG, the histograms and the curves as
the plotly JSON that Streamlit sends). The browser's drawing is not included (the chromium test measures the
whole loop). The model runs on one thread, so its CPU time per frame is the frame time on a
core nobody else uses; the wall time shows what a shared machine gave.

    python bench/classroom_fps.py                  # 20 and 50 steps per frame, the default grid
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
from bench import cpu_model  # bench/bench.py, beside this script


def frame(model: Classroom, speed: int) -> int:
    model.step(speed)
    model.coverage()
    png, _, _ = charts.plane_image(model)
    figures = (
        charts.histogram_figure(model),
        charts.curves_figure(model.history, model.knobs.gamma),
    )
    return len(png) + sum(len(f.to_json()) for f in figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speeds", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument(
        "--data", default="grid", choices=[d for d in points.DATASETS if d != "csv"]
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the page uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{cpu_model() or platform.processor() or 'unknown'}, {torch.get_num_threads()} torch threads, data {args.data}"
    )
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


if __name__ == "__main__":
    main()

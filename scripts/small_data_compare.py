"""Score runs' checkpoints against step, with and without augmentation: the table and
figure of docs/results.md, "Small data: measured".

    python scripts/small_data_compare.py base=runs/base aug=runs/aug-auto --n 562 \
        --out docs/small-data

Every checkpoint of each run (train --checkpoint-every 1000 --keep-checkpoints 20) is scored by
`began_core.evaluation.evaluate` (classifier Frechet distance, class coverage, diversity; n generated
against n real images), beside what the run logged at that step (k_t, the held-out ratio
L(x_held-out) / L(x_train), augmentation p). Results are cached in OUT.json, so a rerun scores only new checkpoints.
Writes OUT.json, OUT.md (a table) and OUT.png (a figure, drawn by plotly in headless
chromium; skipped where no chromium is found).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from began_core.evaluation.evaluate import evaluate
from began_core.runs.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]

KEYS = ("classifier_fd", "coverage", "diversity", "pixel_diversity", "swd")


def logged_at(run: RunDir, step: int) -> dict:
    """The run's record at `step`, with the latest held-out measurement at or before it."""
    out: dict = {}
    for r in run.read_metrics():
        if r["step"] > step:
            break
        out.update({k: r[k] for k in ("k_t", "heldout_gap", "augment_p") if k in r})
        if "L_heldout" in r:
            out["heldout_ratio"] = r["L_heldout"] / r["L_train"]
    return out


def score_runs(runs: dict[str, RunDir], n: int, cache: dict) -> dict:
    for label, run in runs.items():
        rows = cache.setdefault(label, {})
        for step, path in run.checkpoints():
            if str(step) in rows:  # scored before: refresh only what the run logged
                rows[str(step)].update(logged_at(run, step))
                continue
            result = evaluate(path, n=n)
            rows[str(step)] = {k: result[k] for k in KEYS} | logged_at(run, step)
            print(f"{label} step {step}: FD {result['classifier_fd']:.2f}", flush=True)
    return cache


def table(cache: dict) -> str:
    lines = [
        "| run | step | classifier FD | class coverage | diversity | k_t | held-out ratio | p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, rows in cache.items():
        for step in sorted(rows, key=int):
            r = rows[step]
            gap = f"{r['heldout_ratio']:.3f}" if "heldout_ratio" in r else ""
            p = f"{r['augment_p']:.2f}" if "augment_p" in r else ""
            lines.append(
                f"| {label} | {int(step):,} | {r['classifier_fd']:.1f} | {r['coverage']:.2f} | "
                f"{r['diversity']:.2f} | {r.get('k_t', float('nan')):.3f} | {gap} | {p} |"
            )
    return "\n".join(lines) + "\n"


def figure(cache: dict, png: Path) -> bool:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return False
    titles = ("classifier Frechet distance (n=562, lower is better)", "k<sub>t</sub>")
    titles += ("D memorising: L(x<sub>held-out</sub>) / L(x<sub>train</sub>)",)
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.07)
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for i, (label, rows) in enumerate(cache.items()):
        steps = sorted(rows, key=int)
        x = [int(s) for s in steps]
        for col, key in enumerate(("classifier_fd", "k_t", "heldout_ratio"), start=1):
            y = [rows[s].get(key) for s in steps]
            line = {"color": colors[i % len(colors)], "width": 2.5}
            trace = go.Scatter(x=x, y=y, name=label, mode="lines+markers", line=line)
            fig.add_trace(trace.update(showlegend=col == 1), 1, col)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(
        width=1500, height=480, margin={"l": 40, "r": 20, "t": 60, "b": 50}, template="plotly_white"
    )
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "figure.html"
        fig.write_html(page_file, include_plotlyjs=True, full_html=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 480})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            page.screenshot(path=str(png))
            browser.close()
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    ap.add_argument("--n", type=int, default=562)
    ap.add_argument("--out", type=Path, required=True, help="OUT: writes OUT.json, .md, .png")
    args = ap.parse_args()
    runs = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        runs[label] = RunDir(path)
    cache_file = args.out.with_suffix(".json")
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    cache = {label: cache.get(label, {}) for label in runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    score_runs(runs, args.n, cache)
    cache_file.write_text(json.dumps(cache, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(cache))
    drawn = figure(cache, args.out.with_suffix(".png"))
    print(f"wrote {cache_file}, .md" + (", .png" if drawn else " (no chromium: no figure)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The dashboard's memory and CPU while a long run is watched live, and with 100 runs compared
(issue 25): measured on the real server, `streamlit run app/main.py`, headless on 127.0.0.1.

Live: a run with a 45,000-line metrics.jsonl (about 17 MB) gains a line every 2 s, written by a
process that passes for its trainer. Headless chromium (Playwright, Debian's chromium) keeps
the run's Train page open, so its live parts refresh as they do for a user, and reloads the
page every `--reload-every` s. Sampled with psutil: the server's RSS every second (growth from
the first page load to the end, and the peak), its CPU time per page load (from the request
until the page has settled) and per live refresh (CPU between reloads divided by the script
runs the server reported finished over the page's websocket).

Compare: a second server on a folder of 100 finished runs (each `--run-lines` records); Runs &
compare is opened and its "Log scale" toggle clicked `--interactions` times; each click's
server CPU, from the click until the server's run has finished.

    python -m bench.dashboard_memory                # 10 minutes live, as the issue asks
    python -m bench.dashboard_memory --quick        # about a minute live, 3 interactions
    python -m bench.dashboard_memory --minutes 3 --label after
    python -m bench.dashboard_memory --quick --checkout /tmp/old --label before

`--checkout` serves another tree's app/ (an older commit, unpacked with `git archive`), so the
same measurement gives before and after. Results go to bench/results/dashboard-memory.json
and .md, one entry per `--label` (the others are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "dashboard-memory"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 300_000  # one page load on a busy 2-core machine, with the old code
IDLE_S = 10.0

# The trainer's stand-in: appends one record every INTERVAL s. Its command line names
# began_core, which is how the dashboard tells a live trainer from a reused pid.
WRITER = """
import json, sys, time
path, step, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
from bench.dashboard_memory import record
while True:
    time.sleep(interval)
    with open(path, "a") as f:
        f.write(json.dumps(record(step)) + "\\n")
    step += 10
"""


def record(step: int, gamma: float = 0.5) -> dict:
    """A metrics.jsonl record as the trainer writes one (same keys, ~330 bytes)."""
    i = step / 10 + 1
    L_x = 0.08 + 0.3 / i**0.3 + 0.002 * math.sin(i / 7)
    L_G = gamma * L_x * (1 + 0.1 * math.sin(i / 13))
    return {
        "step": step,
        "k_t": min(1.0, 0.02 + 0.01 * math.sin(i / 50) ** 2),
        "L_x": L_x,
        "L_G": L_G,
        "L_D": L_x - 0.03 * L_G,
        "M_global": L_x + abs(gamma * L_x - L_G),
        "balance": gamma * L_x - L_G,
        "lr": 1e-4 if step < 300_000 else 5e-5,
        "images_per_s": 300.0 + 10 * math.sin(i),
        "steps_per_s": 18.75 + 0.6 * math.sin(i),
        "eta_s": max(0.0, (450_000 - step) / 18.75),
        "wall_time": step / 18.75,
        "heldout_gap": 0.001 * math.cos(i / 100),
    }


def make_run(root: Path, name: str, lines: int, state: str, pid: int | None = None) -> Path:
    """A run folder as the trainer leaves it: config, `lines` records, a sample grid."""
    from PIL import Image

    from began_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from began_core.runs.run_dir import RunDir

    run = RunDir(root / name)
    run.create()
    steps = 10 * lines + 450_000
    config = RunConfig(
        model=ModelConfig(resolution=64, n=64),
        train=TrainConfig(gamma=0.5, steps=steps, log_every=10),
        data=DataConfig(source="fluent-faces"),
    )
    run.write_config(config)
    with open(run.metrics_path, "w") as f:
        f.writelines(json.dumps(record(10 * i)) + "\n" for i in range(lines))
    Image.new("RGB", (274, 274), (200, 100, 50)).save(run.sample_path(10 * lines))
    if state != "running":
        (run.checkpoints_dir / f"step_{10 * lines:07d}").mkdir()
    status = {"state": state, "pid": pid or 1, "step": 10 * lines, "steps": steps}
    run.status_path.write_text(json.dumps({**status, "updated": time.time()}))
    return run.path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(checkout: Path, runs: Path, pretrained: Path, log: Path):
    """`streamlit run app/main.py` of `checkout` on a free port: yields (url, psutil.Process)."""
    port = free_port()
    env = dict(os.environ, BEGAN_RUNS_DIR=str(runs), BEGAN_PRETRAINED_DIR=str(pretrained))
    env.update(BEGAN_REFRESH_S="2", GRADIO_SERVER_PORT=str(free_port()))
    env.pop("BEGAN_READ_ONLY", None)
    command = [sys.executable, "-m", "streamlit", "run", "app/main.py"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    command += ["--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, psutil.Process(proc.pid)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class Finished:
    """Counts the script runs (whole page or fragment) the server reports finished, from the
    ForwardMsgs on the page's newest websocket, with the server's CPU time at each."""

    def __init__(self, page, proc: psutil.Process) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.count, self.cpu_at, self._msg, self._proc = 0, [], ForwardMsg, proc
        self._current = None
        page.on("websocket", self._open)

    def _open(self, ws) -> None:
        self._current = ws  # a reload's new session; the old one's last words do not count
        ws.on("framereceived", lambda payload: self._frame(ws, payload))

    def _frame(self, ws, payload) -> None:
        if ws is not self._current or isinstance(payload, str):
            return
        with contextlib.suppress(Exception):  # not every frame need parse
            if self._msg.FromString(payload).WhichOneof("type") == "script_finished":
                self.cpu_at.append(cpu(self._proc))
                self.count += 1


class Sampler(threading.Thread):
    """The server's RSS every `every` s, in MB."""

    def __init__(self, proc: psutil.Process, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.proc, self.every, self.rss = proc, every, []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                self.rss.append((time.monotonic(), self.proc.memory_info().rss / 2**20))
            self._done.wait(self.every)

    def stop(self) -> list[tuple[float, float]]:
        self._done.set()
        self.join()
        return self.rss


def settle(page, finished: Finished, before: int, timeout_s: float = 300) -> None:
    """Wait until the server has finished a script run since `before` and none is running."""
    deadline = time.monotonic() + timeout_s
    while finished.count <= before:
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not finish loading")
        page.wait_for_timeout(100)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=TIMEOUT_MS)


def load(page, finished: Finished, proc: psutil.Process, url: str, ready: str) -> float:
    """Open `url`, wait for `ready` (a CSS selector) and the page to settle: the server's CPU
    seconds from the request until its first script run had finished (serving the page and
    the whole script, the live parts' first drawing included; not their later refreshes)."""
    start, runs = cpu(proc), finished.count
    page.goto(url)
    page.locator(ready).first.wait_for(timeout=TIMEOUT_MS)
    settle(page, finished, runs)
    return finished.cpu_at[runs] - start


def watch_live(args, checkout: Path, tmp: Path, browser) -> dict:
    runs, pretrained = tmp / "live-runs", tmp / "no-pretrained"
    pretrained.mkdir()
    metrics = make_run(runs, "long", args.lines, "running") / "metrics.jsonl"
    size_mb = metrics.stat().st_size / 1e6
    command = [sys.executable, "-c", WRITER, str(metrics), str(10 * args.lines)]
    writer = subprocess.Popen([*command, str(args.interval), "began_core"], cwd=ROOT)
    try:
        status = json.loads((metrics.parent / "status.json").read_text())
        (metrics.parent / "status.json").write_text(json.dumps({**status, "pid": writer.pid}))
        with server(checkout, runs, pretrained, tmp / "live.log") as (url, proc):
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            page.set_default_timeout(TIMEOUT_MS)
            finished = Finished(page, proc)
            rss_start_server = proc.memory_info().rss / 2**20
            start = cpu(proc)
            time.sleep(IDLE_S)  # what the server costs with no page open, for reference
            idle_cores = (cpu(proc) - start) / IDLE_S
            sampler = Sampler(proc)
            sampler.start()
            target = f"{url}/?run=long"
            loads = [load(page, finished, proc, target, ".js-plotly-plot")]
            rss_loaded = proc.memory_info().rss / 2**20
            began, refresh_cpu, refresh_runs, watched = time.monotonic(), 0.0, 0, 0.0
            end = began + 60 * args.minutes
            while time.monotonic() < end:
                start, runs0, t0 = cpu(proc), finished.count, time.monotonic()
                page.wait_for_timeout(1000 * min(args.reload_every, end - time.monotonic()))
                refresh_cpu += cpu(proc) - start
                refresh_runs += finished.count - runs0
                watched += time.monotonic() - t0
                if time.monotonic() < end:
                    loads.append(load(page, finished, proc, target, ".js-plotly-plot"))
            points = page.evaluate(
                "() => { const p = document.querySelector('.js-plotly-plot');"
                " return p && p.data ? p.data.map(t => t.x.length) : []; }"
            )
            seconds = time.monotonic() - began
            rss = sampler.stop()
            page.close()
    finally:
        writer.kill()
        writer.wait()
    lines_now = metrics.read_bytes().count(b"\n")
    rss_end = rss[-1][1]
    return {
        "lines_at_start": args.lines,
        "lines_at_end": lines_now,
        "file_mb_at_start": round(size_mb, 1),
        "watched_s": round(seconds),
        "rss_server_started_mb": round(rss_start_server),
        "rss_after_first_load_mb": round(rss_loaded),
        "rss_end_mb": round(rss_end),
        "rss_peak_mb": round(max(r for _, r in rss)),
        "rss_growth_mb": round(rss_end - rss_loaded),
        "page_loads": len(loads),
        "page_load_cpu_s": {
            "first": round(loads[0], 2),
            "median_later": round(statistics.median(loads[1:]), 2) if len(loads) > 1 else None,
            "max_later": round(max(loads[1:]), 2) if len(loads) > 1 else None,
        },
        "refresh_script_runs": refresh_runs,
        "refresh_cpu_s_per_run": round(refresh_cpu / refresh_runs, 3) if refresh_runs else None,
        # One refresh of the live view: its two fragments (curves and numbers; sample grids).
        "refresh_cpu_s": round(2 * refresh_cpu / refresh_runs, 3) if refresh_runs else None,
        "server_cores_idle": round(idle_cores, 3),
        "server_cores_while_watching": round(refresh_cpu / max(1e-9, watched), 3),
        "points_per_trace_in_browser": max(points, default=0),
        "rss_series_mb": [
            (round(t - rss[0][0]), round(r)) for t, r in rss[:: max(1, len(rss) // 60)]
        ],
    }


def compare_runs(args, checkout: Path, tmp: Path, browser) -> dict:
    runs, pretrained = tmp / "compare-runs", tmp / "no-pretrained"
    for i in range(args.runs):
        make_run(runs, f"run-{i:03d}", args.run_lines, "finished")
    with server(checkout, runs, pretrained, tmp / "compare.log") as (url, proc):
        page = browser.new_page(viewport={"width": 1500, "height": 1900})
        page.set_default_timeout(TIMEOUT_MS)
        finished = Finished(page, proc)
        first = load(page, finished, proc, f"{url}/runs", ".js-plotly-plot")
        toggle = page.get_by_test_id("stMain").get_by_text("Log scale", exact=True)
        clicks = []
        for _ in range(args.interactions):
            start, runs0 = cpu(proc), finished.count
            toggle.click()
            settle(page, finished, runs0)
            clicks.append(finished.cpu_at[runs0] - start)
        rss = proc.memory_info().rss / 2**20
        page.close()
    return {
        "runs": args.runs,
        "lines_per_run": args.run_lines,
        "page_load_cpu_s": round(first, 2),
        "interaction_cpu_s": [round(c, 3) for c in clicks],
        "interaction_cpu_s_median": round(statistics.median(clicks), 3),
        "rss_end_mb": round(rss),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _tree(checkout: Path) -> str:
    """Which tree was served, without this machine's paths: results travel with the repo."""
    return "this checkout" if checkout.resolve() == ROOT.resolve() else "another tree (its commit)"


def commit(checkout: Path) -> str:
    """What was measured: the last commit that changed the dashboard (app/), and HEAD."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    app = git("log", "-1", "--format=%h %s", "--", "app")
    if app:
        dirty = " (uncommitted changes in app/)" if git("status", "--short", "--", "app") else ""
        return f"app/ at {app[:90]}{dirty}; HEAD {git('rev-parse', '--short', 'HEAD')}"
    marker = checkout / "COMMIT"  # a tree unpacked with git archive: written beside it
    return marker.read_text().strip() if marker.is_file() else "?"


def machine() -> dict:
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
    }


def table(results: dict) -> str:
    lines = [
        "# Dashboard memory and CPU (issue 25)",
        "",
        "`python -m bench.dashboard_memory` against the real server (`streamlit run "
        "app/main.py`, headless chromium through Playwright). Live: one run's Train page kept "
        "open while its metrics.jsonl grows by a line every 2 s, reloaded periodically. "
        "Compare: Runs & compare on 100 finished runs, the Log-scale toggle clicked. CPU is "
        "the server process's user + system time. Targets: RSS growth under 100 MB over 10 "
        "minutes, a refresh well under 0.5 s, a 100-run interaction under 1 s.",
        "",
    ]
    for label, r in results.items():
        live, cmp = r["live"], r["compare"]
        m = r["machine"]
        lines += [
            f"## {label}: {r['commit']}",
            "",
            f"{r['date']} on {m['host']}: {m['cpu']}, {m['cores']} cores, "
            f"{m['memory_gb']} GB; load average {r['load_before']} before, "
            f"{r['load_after']} after. {r.get('note', '')}".rstrip(),
            "",
            "| measured | value |",
            "| --- | --- |",
            f"| live run | {live['lines_at_start']:,} lines ({live['file_mb_at_start']} MB) "
            f"-> {live['lines_at_end']:,}, watched {live['watched_s']} s |",
            f"| server RSS: started, after first load, end, peak (MB) | "
            f"{live['rss_server_started_mb']}, {live['rss_after_first_load_mb']}, "
            f"{live['rss_end_mb']}, {live['rss_peak_mb']} |",
            f"| **RSS growth while watching (MB)** | **{live['rss_growth_mb']}** |",
            f"| page load, server CPU: first, median and max of {live['page_loads'] - 1} "
            f"reloads (s) | {live['page_load_cpu_s']['first']}, "
            f"{live['page_load_cpu_s']['median_later']}, {live['page_load_cpu_s']['max_later']} |",
            f"| **live refresh (its 2 fragments), server CPU (s)** | "
            f"**{live['refresh_cpu_s']}** ({live['refresh_script_runs']} fragment runs, "
            f"{live['refresh_cpu_s_per_run']} s each) |",
            f"| server cores busy: idle, no page / while watching | "
            f"{live['server_cores_idle']} / {live['server_cores_while_watching']} |",
            f"| points per curve sent to the browser | {live['points_per_trace_in_browser']:,} |",
            f"| Runs & compare, {cmp['runs']} runs x {cmp['lines_per_run']:,} lines: first "
            f"load, server CPU (s) | {cmp['page_load_cpu_s']} |",
            f"| **Runs & compare interaction, server CPU (s), median** | "
            f"**{cmp['interaction_cpu_s_median']}** (each: "
            f"{', '.join(str(c) for c in cmp['interaction_cpu_s'])}) |",
            f"| server RSS after the interactions (MB) | {cmp['rss_end_mb']} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to watch live")
    parser.add_argument("--quick", action="store_true", help="1 minute live, 3 interactions")
    parser.add_argument("--lines", type=int, default=45_000, help="the live run's records")
    parser.add_argument("--interval", type=float, default=2.0, help="s between appended lines")
    parser.add_argument("--reload-every", type=float, default=30.0, help="s between reloads")
    parser.add_argument("--runs", type=int, default=100, help="runs in Runs & compare")
    parser.add_argument("--run-lines", type=int, default=4_500, help="records of each")
    parser.add_argument("--interactions", type=int, default=5)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the tree whose app/ runs")
    parser.add_argument("--label", default="after", help="the results' entry to (re)write")
    parser.add_argument("--note", default="", help="a sentence kept with the results")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results stem (.json, .md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.reload_every, args.interactions = 1.0, 20.0, 3
    if not CHROMIUM.exists():
        print("needs Debian's chromium (apt-get install -y chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="dashboard-memory-") as tmp,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            live = watch_live(args, args.checkout.resolve(), Path(tmp), browser)
            print(json.dumps(live | {"rss_series_mb": "..."}, indent=1), flush=True)
            cmp = compare_runs(args, args.checkout.resolve(), Path(tmp), browser)
            print(json.dumps(cmp, indent=1), flush=True)
        finally:
            browser.close()
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(args.checkout),
        "machine": machine(),
        "load_before": load_before,
        "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("out", "checkout")}
        | {"checkout": _tree(args.checkout)},
        "note": args.note,
        "live": live,
        "compare": cmp,
    }
    stem = args.out
    json_path = stem.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results[args.label] = result
    order = {"before": 0}
    results = dict(sorted(results.items(), key=lambda kv: (order.get(kv[0], 1), kv[0])))
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table(results))
    print(f"wrote {json_path} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

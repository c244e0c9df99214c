"""A bounded load test of the explorer on 127.0.0.1: many clients at once, for a fixed time,
sending what users send (slider renders, sample grids, mirror inversions of an uploaded image,
gamma comparisons). Every request must be answered, or refused with a clear "busy" message
(Gradio's queue is full); none may be lost. Prints requests, answered, refused, lost, p50/p99
latency and the peak memory of the process (server and clients together).

    python -m bench.explorer_load                      # 8 clients for 20 s, tiny generators
    python -m bench.explorer_load --clients 40 --seconds 60

tests/test_faults_load.py runs `load` below against the same server, for a shorter time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from app import explorer, explorer_model
from began_core.checkpoints.hub import save_pretrained
from began_core.checkpoints.model_card import model_card, training_record
from began_core.config import ModelConfig, RunConfig, TrainConfig
from began_core.data.images import to_pil
from began_core.nn.model import BEGAN

CFG = ModelConfig(resolution=32, n=8, Nh=16, Nz=16)
GAMMAS = {"a": 0.3, "b": 0.5, "c": 0.7}
BUSY = ("queue is full", "busy", "too many")  # how a refusal reads; anything else is lost
REQUEST_TIMEOUT = 120.0  # a request unanswered this long counts as lost


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_checkpoints(root: Path) -> tuple[Path, Path, Path]:
    """pretrained/ with three tiny generators at three gammas, and an image to invert."""
    pretrained, runs = root / "pretrained", root / "runs"
    for i, (name, gamma) in enumerate(GAMMAS.items()):
        torch.manual_seed(i)
        config = RunConfig(model=CFG, train=TrainConfig(gamma=gamma))
        facts = dict(step=10, wall_time=1.0, hardware="cpu")
        card, record = model_card(config, **facts), training_record(config, **facts)
        save_pretrained(BEGAN(CFG), pretrained / f"{name}-gamma{gamma}", card=card, training=record)
    runs.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(9)
    image = root / "face.png"
    to_pil(BEGAN(CFG).generate(torch.rand(1, CFG.Nz) * 2 - 1)[0]).save(image)
    return pretrained, runs, image


def serve(pretrained: Path, runs: Path, queue_size: int = 64):
    """The explorer as explorer_server runs it (a queue of 64), on 127.0.0.1. (demo, url)"""
    demo = explorer.build_explorer(pretrained, runs, allow_hub=False)
    port = free_port()
    demo.queue(max_size=queue_size).launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True
    )
    return demo, f"http://127.0.0.1:{port}/"


def requests(image: Path, same: bool = False):
    """(kind, args, api_name) of each request a client cycles through. `same`: every client
    asks for one and the same 64-image grid, again and again, so that the same picture is
    rendered and served by several requests at once."""
    from gradio_client import handle_file

    first = "pretrained/a-gamma0.3"
    if same:
        yield from itertools.repeat(("grid", (first, 0, 64), "/sample_grid"))
    n_sliders = explorer_model.Z_SLIDERS + explorer_model.PC_SLIDERS
    keys = [f"pretrained/{n}-gamma{g}" for n, g in GAMMAS.items()]
    for i in itertools.count():
        values = [0.0] * n_sliders
        values[explorer_model.Z_SLIDERS] = (i % 9) / 4 - 1
        yield "render", (first, i % 5, *values), "/render"
        yield "grid", (first, i % 7, 16), "/sample_grid"
        yield "mirror", (first, handle_file(str(image)), 4, 10, 1), "/mirror"
        yield "gamma", (keys, i % 3, 16), "/gamma"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(
    url: str, image: Path, clients: int = 8, seconds: float = 20.0, same: bool = False
) -> dict:
    """`clients` threads, each its own gradio_client, send requests for `seconds` (all the same
    one with `same`); waits for every answer (or REQUEST_TIMEOUT) and returns the figures."""
    from gradio_client import Client

    results: list[tuple[str, str, float, str]] = []  # (kind, outcome, seconds, error)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    rss_samples = [rss_mb()]

    def one_client(index: int) -> None:
        client = Client(url, verbose=False)
        work = requests(image, same)
        for _ in range(index):  # clients start at different points of the cycle
            next(work)
        while time.monotonic() < deadline:
            kind, args, api = next(work)
            t = time.perf_counter()
            try:
                client.submit(*args, api_name=api).result(timeout=REQUEST_TIMEOUT)
                outcome, error = "answered", ""
            except Exception as e:  # refused (busy) or lost: which one is the point
                error = f"{type(e).__name__}: {e}"
                outcome = "refused" if any(b in error.lower() for b in BUSY) else "lost"
            with lock:
                results.append((kind, outcome, time.perf_counter() - t, error))

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        rss_samples.append(rss_mb())
        time.sleep(0.5)
    latencies = sorted(r[2] for r in results if r[1] == "answered")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    by_kind = {k: sum(r[0] == k for r in results) for k in ("render", "grid", "mirror", "gamma")}
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(results),
        "answered": sum(r[1] == "answered" for r in results),
        "refused_busy": sum(r[1] == "refused" for r in results),
        "lost": sum(r[1] == "lost" for r in results),
        "lost_errors": sorted({r[3] for r in results if r[1] == "lost"})[:5],
        "by_kind": by_kind,
        "p50_s": round(pct(0.50), 3),
        "p99_s": round(pct(0.99), 3),
        "median_s": round(statistics.median(latencies), 3) if latencies else 0.0,
        "rss_start_mb": round(rss_samples[0], 1),
        "rss_end_mb": round(rss_samples[-1], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--queue", type=int, default=64, help="Gradio's queue size (the server's 64)")
    p.add_argument(
        "--same", action="store_true", help="every client asks for the same picture, at once"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pretrained, runs, image = make_checkpoints(Path(tmp))
        demo, url = serve(pretrained, runs, args.queue)
        try:
            figures = load(url, image, args.clients, args.seconds, args.same)
        finally:
            demo.close()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

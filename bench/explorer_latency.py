"""How fast the explorer's image follows a latent slider: the round trip of its `/render`
endpoint (what a slider's move calls), measured through gradio_client against the launched app.

    python -m bench.explorer_latency              # a 64x64, n=64 generator (the issue's target)
    python -m bench.explorer_latency --resolution 32 --filters 32

The generator's weights do not change its speed, so a freshly initialised one of the given
size is served. The figure excludes only the browser's drawing of the PNG. The explorer runs
with its usual one torch thread (BEGAN_EXPLORER_THREADS).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from gradio_client import Client

from app import explorer, explorer_model, explorer_server
from began_core.checkpoints.hub import save_pretrained
from began_core.config import ModelConfig
from began_core.nn.model import BEGAN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--moves", type=int, default=40, help="slider moves timed")
    p.add_argument("--json", type=Path, help="also write the result here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pretrained, runs = Path(tmp) / "pretrained", Path(tmp) / "runs"
        name = f"g{args.resolution}-n{args.filters}"
        torch.manual_seed(0)
        save_pretrained(
            BEGAN(ModelConfig(resolution=args.resolution, n=args.filters)), pretrained / name
        )
        threads = explorer_server.use_threads()
        demo = explorer.build_explorer(pretrained, runs, allow_hub=False)
        port = free_port()
        demo.queue().launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True
        )
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            key = f"pretrained/{name}"
            client.predict(key, 0, api_name="/select_checkpoint")  # loads G, finds directions
            n_sliders = explorer_model.Z_SLIDERS + explorer_model.PC_SLIDERS
            times = []
            for i in range(args.moves):
                values = [0.0] * n_sliders
                values[explorer_model.Z_SLIDERS] = -1 + 2 * i / max(1, args.moves - 1)  # PC1 moves
                t = time.perf_counter()
                client.predict(key, 0, *values, api_name="/render")
                times.append(time.perf_counter() - t)
        finally:
            demo.close()

    times_ms = sorted(1e3 * t for t in times[3:])  # the first moves warm caches up
    result = {
        "what": "explorer /render round trip (one slider move), gradio_client",
        "resolution": args.resolution,
        "n": args.filters,
        "torch_threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "median_ms": statistics.median(times_ms),
        "p90_ms": times_ms[int(0.9 * (len(times_ms) - 1))],
        "moves": len(times_ms),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

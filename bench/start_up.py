"""What `train` shows, and when, between its start and its first step, on a folder of JPEGs:
on a new machine (no decoded-image cache, no compiler cache) and on the next run there.

    python -m bench.start_up                    # 3,000 synthetic 178x218 JPEGs, 64x64
    python -m bench.start_up --n 30000          # CelebA-sized folder (minutes)

Makes N CelebA-shaped JPEGs (bench/jpeg_draft.py's), then runs `python -m began_core train
--preset faces-64 --steps 1 --quiet` on them twice in fresh processes: first with an empty
BEGAN_CACHE and an empty TORCHINDUCTOR_CACHE_DIR (a machine that never trained), then again
with both as the first left them (every later run). Each line the trainer writes to stdout
or stderr is stamped with the seconds since the process started (a progress bar counts once,
at its last state); the longest stretch with nothing new on screen is reported beside the
total, with the machine's load average at the start. Writes bench/results/start-up.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench import cpu_model
from bench.jpeg_draft import make_images
from bench.tables import start_up_table as table

RESULTS = Path(__file__).resolve().parent / "results" / "start-up"


def stamped_lines(command: list[str], env: dict[str, str], scrub: str) -> tuple[list[dict], float]:
    """Every line the command writes (a carriage return ends one too), with its time;
    `scrub` (the temporary folder) is written as DIR."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
    )
    assert proc.stdout is not None
    lines: list[dict] = []
    buf = b""
    while chunk := proc.stdout.read(1):
        if chunk not in b"\r\n":
            buf += chunk
            continue
        text = buf.decode("utf-8", "replace").strip().replace(scrub, "DIR")
        buf = b""
        if not text:
            continue
        at = round(time.perf_counter() - t0, 2)
        bar = text.split(":", 1)[0] if "%|" in text else None  # a progress bar's name
        if bar and lines and lines[-1].get("bar") == bar:
            lines[-1].update(text=text, last=at)  # the same bar, further on
        else:
            lines.append({"at": at, "last": at, "text": text, **({"bar": bar} if bar else {})})
    if proc.wait() != 0:
        raise SystemExit(
            f"train exited with {proc.returncode}:\n" + "\n".join(line["text"] for line in lines)
        )
    return lines, time.perf_counter() - t0


def longest_silence(lines: list[dict]) -> dict:
    """The longest stretch with nothing new on screen (a moving bar is something new)."""
    best = {
        "seconds": lines[0]["at"] if lines else 0.0,
        "before": lines[0]["text"] if lines else "",
    }
    for prev, line in itertools.pairwise(lines):
        gap = line["at"] - prev["last"]
        if gap > best["seconds"]:
            best = {"seconds": round(gap, 2), "before": line["text"]}
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="JPEGs in the folder (default 3000)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    runs = {}
    load = os.getloadavg()[0]  # what else the machine was doing
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "faces").mkdir()
        make_images(root / "faces", args.n)
        env = {
            **os.environ,
            "BEGAN_CACHE": str(root / "began-cache"),
            "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor-cache"),
        }
        for name in ("new machine", "next run"):
            out = root / f"run-{len(runs)}"
            command = [sys.executable, "-m", "began_core", "train", "--preset", "faces-64"]
            command += ["--data", str(root / "faces"), "--steps", "1", "--out", str(out), "--quiet"]
            lines, total = stamped_lines(command, env, str(root))
            runs[name] = {
                "lines": lines,
                "total_s": round(total, 2),
                "silence": longest_silence(lines),
            }
            print(
                f"{name}: {total:.1f} s, longest silence {runs[name]['silence']['seconds']:.1f} s"
            )
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": round(load, 1),
        "images": args.n,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

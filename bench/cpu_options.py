"""What each speed option gives a CPU training step, one option added at a time.

    python -m bench.cpu_options                  # the two configurations of docs/speed.md's table
    python -m bench.cpu_options --res 64 --n 32 --rounds 12

Every variant is a `began_core.training.step.TrainStep` (the reference is `bench/reference.py`), built
from the same weights and timed in turns, a step of each per round, so that a busy moment of
the machine slows them all alike; the figure is the median step over the rounds, as images/s
and as a ratio to the eager float32 reference. torch.compile's variants also report how long
their first steps took (the compile). Writes bench/results/cpu-options.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from began_core.config import ModelConfig, TrainConfig
from began_core.nn.elu import set_fast
from began_core.nn.model import BEGAN
from began_core.training.fast_path import native_bf16, resolve
from began_core.training.step import TrainStep
from bench.bench import ceilings, cpu_model, step_flops, write_results
from bench.reference import ReferenceStep
from bench.tables import cpu_options_table

BATCH = 16
CONFIGS = [(64, 32), (32, 16)]  # the shipped generators' size; the dashboard's demo

# (label, TrainConfig options, D on real+fake as one batch, fast ELU, torch threads or None)
F32 = dict(amp=False, fused_adam=False)
BF16 = dict(amp=True, fused_adam=True)
VARIANTS = [
    ("float32, NCHW (eager)", dict(F32, channels_last=False), False, False, None),
    ("float32, channels_last", F32, False, False, None),
    ("+ bf16 autocast", dict(F32, amp=True), False, False, None),
    ("+ fused Adam", BF16, False, False, None),
    ("+ fast ELU", BF16, False, True, None),
    ("+ D on real+fake as one batch", BF16, True, True, None),
    ("bf16, fused Adam, torch.compile of G and D", dict(BF16, compile=True), False, False, None),
    ("the default, one thread", BF16, False, True, 1),
]


def build(res: int, n: int, options: dict, fuse_D: bool, elu: bool) -> tuple[TrainStep, float]:
    """The step and the seconds its first three steps took (what a user waits at start)."""
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=res, n=n))
    step = TrainStep(model, TrainConfig(batch_size=BATCH, **options), torch.device("cpu"))
    step.fuse_D = fuse_D
    set_fast(model, elu)
    x = torch.rand(BATCH, 3, res, res) * 2 - 1
    t = time.perf_counter()
    for _ in range(3):
        step(x)
    return step, time.perf_counter() - t


def measure(res: int, n: int, rounds: int, ceiling_bf16: float) -> dict:
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    steps = {
        "reference (peer-style eager float32)": (
            ReferenceStep(BEGAN(ModelConfig(resolution=res, n=n))),
            None,
        )
    }
    first = {}
    for label, options, fuse_D, elu, n_threads in VARIANTS:
        step, seconds = build(res, n, options, fuse_D, elu)
        steps[label], first[label] = (step, n_threads), seconds
    x = torch.rand(BATCH, 3, res, res) * 2 - 1
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for label, (step, n_threads) in steps.items():
            torch.set_num_threads(n_threads or threads)
            t = time.perf_counter()
            step(x)
            times[label].append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    flops = step_flops(res, n, BATCH)
    ref = statistics.median(times["reference (peer-style eager float32)"])
    rows = []
    for label in steps:
        s = statistics.median(times[label])
        rows.append(
            {
                "variant": label,
                "step_ms": 1e3 * s,
                "images_per_s": BATCH / s,
                "speedup": ref / s,
                "of_bf16_conv_ceiling": flops / s / 1e9 / ceiling_bf16,
                "first_steps_s": first.get(label),
            }
        )
    default = resolve(TrainConfig(), torch.device("cpu")).describe()
    return {
        "res": res,
        "n": n,
        "batch": BATCH,
        "gflop_per_step": flops / 1e9,
        "default": default,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"### What each option gives ({result['cpu_model']}, {result['cpus']} cores, "
        f"native bf16: {result['native_bf16'] or 'none'}), {result['date']}",
        "",
        f"torch {result['torch']}, batch {BATCH}, median over {result['rounds']} rounds. "
        f"Ceilings: 3x3 convolution {result['conv_float32']:.0f} GFLOP/s in float32, "
        f"{result['conv_bf16']:.0f} in bf16.",
        "",
    ]
    for c in result["configs"]:
        lines += [cpu_options_table(c), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--res", type=int)
    p.add_argument("--n", type=int)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu-options")
    args = p.parse_args()
    configs = [(args.res, args.n)] if args.res and args.n else CONFIGS
    conv32, conv16 = (
        ceilings(torch.device("cpu"))["conv3x3"],
        ceilings(torch.device("cpu"), torch.bfloat16)["conv3x3"],
    )
    result = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "rounds": args.rounds,
        "conv_float32": conv32,
        "conv_bf16": conv16,
        "configs": [],
    }
    for res, n in configs:
        result["configs"].append(measure(res, n, args.rounds, conv16))
        print(json.dumps(result["configs"][-1]), flush=True)
    table = markdown(result)
    print(table)
    write_results(args.out, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

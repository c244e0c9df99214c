"""Where a CPU training step's time goes: torch.profiler over `began_core.training.step.TrainStep`.

    python -m bench.profile_cpu                       # the default grid -> bench/results/
    python -m bench.profile_cpu --res 64 --n 32       # one configuration, printed only
    python -m bench.profile_cpu --options amp,channels_last,fused_adam,compile
    python -m bench.profile_cpu --torch-elu --out bench/results/cpu-profile-torch-elu

Every operator the profiler sees is put in one bucket by its own (self) time: convolutions
(forward and backward, oneDNN), matrix products (the two linear layers), ELU (forward and
backward, torch's or began_core/nn/elu.py's compiled kernels), nearest up-sampling, dtype casts
and copies, allocation, Adam (everything inside the optimizer's step), zeroing gradients, and
the rest of the elementwise work and reductions (the loss among them). What no operator
accounts for, step time minus the operators' time, is the framework outside them: Python, the
autograd engine, dispatch. Shares are of the step's wall time, median over the profiled steps.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from began_core.config import ModelConfig, TrainConfig
from began_core.nn.elu import set_fast
from began_core.nn.model import BEGAN
from began_core.training.step import TrainStep
from bench.bench import cpu_model, write_results
from bench.tables import PROFILE_BUCKETS, profile_table

GRID = [(32, 16), (32, 32), (32, 64), (64, 16), (64, 32), (64, 64)]
BATCH = 16
BUCKETS = PROFILE_BUCKETS


def bucket(name: str, ancestors: list[str]) -> str:
    """The bucket of an operator by its name and the names of the events around it."""
    if any(a.startswith("Optimizer.step") for a in ancestors):
        return "Adam"
    if any(a.startswith("Optimizer.zero_grad") for a in ancestors):
        return "zero_grad"
    n = name.lower()
    if "elu" in n or any("elu" in a.lower() for a in ancestors):  # also the fast ELU's kernels
        return "ELU"
    if "conv" in n:
        return "convolution"
    if n in ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul"):
        return "matrix product"
    if "upsample" in n:
        return "up-sampling"
    if n in ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous"):
        return "casts and copies"
    if n.startswith(("aten::empty", "aten::zeros", "aten::resize_", "aten::new_empty")):
        return "allocation"
    return "elementwise and reductions"


def _ancestors(event) -> list[str]:
    out, p = [], event.cpu_parent
    while p is not None:
        out.append(p.name)
        p = p.cpu_parent
    return out


def profile_step(
    res: int, n: int, options: dict, steps: int = 6, warmup: int = 4, torch_elu: bool = False
) -> dict:
    """Milliseconds per step in each bucket (mean over `steps` profiled steps) and in all."""
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=res, n=n))
    step = TrainStep(model, TrainConfig(batch_size=BATCH, **options), torch.device("cpu"))
    if torch_elu:
        set_fast(model, False)
    x = torch.rand(BATCH, 3, res, res) * 2 - 1
    for _ in range(warmup):
        step(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step(x)
        wall = (time.perf_counter() - t) / steps
    ms = dict.fromkeys(BUCKETS, 0.0)
    for e in prof.events():
        if e.device_type.name != "CPU" or e.name.startswith(("Optimizer.", "ProfilerStep")):
            continue  # regions, not operators: their operators are counted by themselves
        ms[bucket(e.name, _ancestors(e))] += e.self_cpu_time_total / 1e3 / steps
    counted = sum(ms.values())
    # Operators on the autograd engine's thread overlap nothing here (one step at a time), so
    # their self times add up with the main thread's; what is left of the wall time is outside.
    ms["outside operators"] = max(0.0, 1e3 * wall - counted)
    path = step.path.describe().replace("fast ELU", "torch's ELU") if torch_elu else None
    return {
        "res": res,
        "n": n,
        "batch": BATCH,
        "path": path or step.path.describe(),
        "step_ms": 1e3 * wall,
        "ms": ms,
    }


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"### Where a CPU step goes ({result['cpu_model']}, {result['cpus']} cores, "
        f"{result['threads']} threads), {result['date']}",
        "",
        f"torch {result['torch']}, batch {BATCH}; the step: {rows[0]['path']}. Share of a "
        "step's wall time per bucket (ms per step in brackets).",
        "",
        profile_table(result),
    ]
    return "\n".join(lines) + "\n"


def parse_options(text: str) -> dict:
    options = {}
    for name in filter(None, (s.strip() for s in text.split(","))):
        if name not in ("amp", "channels_last", "fused_adam", "compile"):
            raise SystemExit(f"unknown option {name!r}: amp, channels_last, fused_adam, compile")
        options[name] = True
    return options


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--res", type=int, help="one resolution (default: the grid)")
    p.add_argument("--n", type=int, help="one filter count (default: the grid)")
    p.add_argument(
        "--options",
        default="",
        help="TrainConfig speed options forced on (default: none, the path train takes)",
    )
    p.add_argument("--torch-elu", action="store_true", help="torch's ELU, not the fast one")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out", type=Path, help="write NAME.json and NAME.md (default: print only)")
    args = p.parse_args()
    options = parse_options(args.options)
    grid = [(r, n) for r, n in GRID if args.res in (None, r) and args.n in (None, n)]
    if args.res and args.n and (args.res, args.n) not in grid:
        grid = [(args.res, args.n)]
    rows = []
    for res, n in grid:
        rows.append(profile_step(res, n, options, args.steps, torch_elu=args.torch_elu))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "options": ",".join(options),
        "rows": rows,
    }
    table = markdown(result)
    print(table)
    if args.out:
        write_results(args.out, result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

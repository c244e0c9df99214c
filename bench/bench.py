"""Training and sampling throughput of began_core, against a peer-style eager step.

    python -m bench.bench                 # full grid on every device here -> bench/results/
    python -m bench.bench --quick         # small CPU grid (CI), printed only
    python -m bench.bench --device cuda   # the GPU's table -> bench/results/cuda.{json,md}
    python -m bench.bench --device cuda --profile   # and a profile of the graphed step
    python -m bench.bench --dry-run --out-dir OUT   # every stage at a toy size, in seconds

For every configuration (resolution x filters n x batch) and device it times
  - began_core: `began_core.training.step.TrainStep`, the very step `began_core.training.train` runs by default
                (`began_core/training/fast_path.py` picks its options for the device and processor),
                launched eagerly: on one CUDA process `train` replays it as the graphed row;
  - fast:       the same step with every speed option that pays on (bf16 autocast among them);
  - reference:  `bench/reference.py`, plain eager float32 as peer repositories write it;
and on CUDA two more:
  - graphed:    the default step captured as one CUDA graph (began_core/training/graphed.py),
                what `train` runs on one CUDA process;
  - reduce-overhead: torch.compile(mode="reduce-overhead") of G and D, which graphs each
                network's step apart (and skips a graph whose input made outside it is mutated);
counts the FLOPs of one step (torch's FlopCounterMode on the meta device) and reports images/s,
step time, achieved GFLOP/s and its share of the device's own measured ceilings (a matrix
product, and a 3x3 convolution, each in float32 and in bf16).
It also times G(z) for one 64x64 image and for a batch of 64. Configurations whose estimated
step time exceeds --max-step-s are skipped and listed as such. On CUDA the results state the
issue's targets: 64x64, n=64, batch 16 at 5x the eager reference or better; batch 64 at 30% of
the bf16 convolution ceiling or better; `--profile` writes where a graphed and an eager step's
time goes (torch.profiler: kernels per step, the GPU's busy time, the table by operator).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from began_core.config import ModelConfig, TrainConfig
from began_core.nn.model import BEGAN
from began_core.training.distributed import hardware_name
from began_core.training.fast_path import native_bf16, resolve
from began_core.training.graphed import GraphedStep
from began_core.training.step import TrainStep
from bench.reference import ReferenceStep
from bench.tables import graphed_table, grid_table, target_lines

FULL = {"resolution": [32, 64, 128], "n": [32, 64, 128], "batch": [16, 64]}
QUICK = {"resolution": [32], "n": [16, 32], "batch": [16]}
CUDA_GRID = {"resolution": [32, 64, 128], "n": [32, 64, 128], "batch": [16, 64]}
DRY = {"resolution": [32], "n": [8], "batch": [4]}  # --dry-run: the code paths, not the speed
# The targets on CUDA: (resolution, n, batch) -> what the graphed step must reach.
TARGETS = {(64, 64, 16): ("speedup", 5.0), (64, 64, 64): ("of_conv_ceiling", 0.30)}


def cpu_model() -> str:
    """The processor's name as the kernel reports it ("" where /proc/cpuinfo is absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def write_results(stem: Path, result: dict, table: str) -> None:
    """STEM.json (the figures) and STEM.md (the table) under bench/results/ or wherever."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_gflops(fn, flops: float, device: torch.device, repeats: int = 12) -> float:
    for _ in range(3):  # warm-up: oneDNN picks and caches its kernels on the first calls
        fn()
    best = 0.0
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return best


def ceilings(
    device: torch.device, dtype: torch.dtype = torch.float32, small: bool = False
) -> dict[str, float]:
    """What this device can do at all, two yardsticks, best over sizes and repeats so a busy
    moment does not lower them:

    - matmul: large square matrix products (torch.mm; on the CPU that is MKL's sgemm);
    - conv3x3: a large 3x3 convolution, the operation BEGAN is made of, counted as a direct
      convolution. On a CPU where MKL's sgemm is not tuned (an AMD EPYC, say) oneDNN's
      convolutions run far above the matmul figure, so both are reported."""
    matmul = 0.0
    sizes = (1024, 2048, 3072) if device.type == "cpu" else (4096, 8192)
    if small:
        sizes = (256,)
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        matmul = max(matmul, _best_gflops(functools.partial(torch.mm, a, b), 2 * size**3, device))
    B, C, R = (16, 256, 32) if device.type == "cpu" else (64, 512, 64)
    B, C, R = (2, 32, 16) if small else (B, C, R)
    x = torch.randn(B, C, R, R, device=device, dtype=dtype)
    w = torch.randn(C, C, 3, 3, device=device, dtype=dtype)
    conv = _best_gflops(
        lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * B * R * R * C * C * 9, device
    )
    return {"matmul": matmul, "conv3x3": conv}


def step_flops(resolution: int, n: int, batch: int, reference: bool = False) -> float:
    """FLOPs of one training step (forward and backward of D and G), counted on meta tensors
    as direct convolutions and matrix products. The reference step does less work (one G
    forward where began_core draws z_D and z_G apart, as the paper does), so it has its own."""
    model = BEGAN(ModelConfig(resolution=resolution, n=n)).to("meta")
    if reference:
        step = ReferenceStep(model, sync=False)
    else:
        step = TrainStep(model, TrainConfig(), torch.device("meta"))
    x = torch.empty(batch, 3, resolution, resolution, device="meta")
    with FlopCounterMode(display=False) as counter:
        step(x)
    return float(counter.get_total_flops())


def time_steps(fn, x: torch.Tensor, device: torch.device, min_s: float, warmup: int) -> float:
    """Median seconds per step over at least 3 steps and `min_s` seconds, after warm-up."""
    for _ in range(warmup):
        fn(x)
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_s:
        t = time.perf_counter()
        fn(x)
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def variants(device: torch.device, batch: int, dry_run: bool = False) -> dict[str, object]:
    """The steps timed per configuration: began_core as `train` runs it by default (fast_path.py:
    bf16 autocast on CUDA and on CPUs with native bf16, channels_last, fused Adam), with every
    option that pays on (bf16 on any CPU; torch.compile on CUDA only: on the CPU it did not
    pay, bench/results/cpu-options.md), and the eager reference."""
    fast = dict(amp=True, channels_last=True, fused_adam=True, compile=device.type == "cuda")
    out: dict[str, object] = {
        # the default step, launched eagerly (the graphed row is train's on one CUDA process)
        "began_core": lambda m: TrainStep(m, TrainConfig(batch_size=batch, graph=False), device),
        "fast": lambda m: TrainStep(m, TrainConfig(batch_size=batch, **fast), device),
        "reference": lambda m: ReferenceStep(m),
    }
    if device.type == "cuda" or dry_run:
        # (capture=None: on CUDA it captures; a dry run on the CPU runs the uncaptured path)
        out["graphed"] = lambda m: GraphedStep(TrainStep(m, TrainConfig(batch_size=batch), device))
        out["reduce-overhead"] = lambda m: reduce_overhead(m, batch, device)
    return out


def reduce_overhead(model: BEGAN, batch: int, device: torch.device) -> TrainStep:
    """The default step with G and D under torch.compile(mode="reduce-overhead")."""
    step = TrainStep(model, TrainConfig(batch_size=batch), device)
    mode = "reduce-overhead" if device.type == "cuda" else "default"
    step.G_train = torch.compile(model.G, mode=mode)
    step.D_train = torch.compile(model.D, mode=mode)
    return step


def bench_config(
    res: int, n: int, batch: int, device: torch.device, args, ceilings: dict[str, dict]
) -> dict:
    """One row of the table. `ceilings` holds the device's float32 and bf16 ceilings; each
    step is measured against those of its own precision."""
    flops = {"began_core": step_flops(res, n, batch)}
    flops["fast"] = flops["graphed"] = flops["reduce-overhead"] = flops["began_core"]
    flops["reference"] = step_flops(res, n, batch, reference=True)
    row = {"resolution": res, "n": n, "batch": batch, "gflop_per_step": flops["began_core"] / 1e9}
    estimate = flops["began_core"] / (0.5 * max(ceilings["float32"].values()) * 1e9)
    if estimate > args.max_step_s:
        return {
            **row,
            "skipped": f"estimated {estimate:.0f} s/step > --max-step-s {args.max_step_s}",
        }
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    for name, make in variants(device, batch, args.dry_run).items():
        if args.dry_run and name == "reduce-overhead":
            continue  # inductor compiles for a minute on the CPU: not a dry run's seconds
        torch.manual_seed(0)
        step = make(BEGAN(ModelConfig(resolution=res, n=n)).to(device))
        # (a graphed step captures after its warm-up steps: those come before the timing)
        warmup = args.warmup + (5 if name == "graphed" else 0)
        try:
            seconds = time_steps(step, x, device, args.min_s, warmup)
        except Exception as e:  # one variant failing on a GPU must not lose the others
            row[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"{name} failed at {res}x{res} n={n} batch {batch}: {e}", file=sys.stderr)
            continue
        amp = getattr(getattr(step, "step", step), "amp", False)
        ceiling = ceilings["bf16" if amp else "float32"]  # as it ran
        row[name] = {
            "step_s": seconds,
            "images_per_s": batch / seconds,
            "gflops": flops[name] / seconds / 1e9,
            "of_ceiling": flops[name] / seconds / 1e9 / ceiling["matmul"],
            "of_conv_ceiling": flops[name] / seconds / 1e9 / ceiling["conv3x3"],
        }
    failed = [k for k in ("began_core", "fast", "reference") if "error" in row[k]]
    if failed:
        return {**row, "skipped": f"{', '.join(failed)} failed: {row[failed[0]]['error']}"}
    ref = row["reference"]["images_per_s"]
    row["speedup"] = row["began_core"]["images_per_s"] / ref
    row["speedup_fast"] = row["fast"]["images_per_s"] / ref
    for name in ("graphed", "reduce-overhead"):
        if "images_per_s" in row.get(name, {}):
            row[name]["speedup"] = row[name]["images_per_s"] / ref
    return row


def targets(result: dict) -> list[dict]:
    """The issue's targets for the graphed step, each met or missed, from the rows measured."""
    out = []
    for r in result["rows"]:
        key = (r["resolution"], r["n"], r["batch"])
        if key not in TARGETS:
            continue
        measure, want = TARGETS[key]
        got = r.get("graphed", {}).get(measure)
        out.append({"config": list(key), "measure": measure, "target": want, "graphed": got,
                    "met": got is not None and got >= want})  # fmt: skip
    return out


def generation_latency(device: torch.device, repeats: int = 50, small: bool = False) -> dict:
    model = BEGAN(ModelConfig(resolution=32 if small else 64, n=8 if small else 64))
    model = model.to(device).eval()
    out = {}
    for batch in (1, 64):
        z = model.sample_z(batch)
        for _ in range(3):
            model.generate(z)
        times = []
        for _ in range(repeats if batch == 1 else max(5, repeats // 10)):
            sync(device)
            t = time.perf_counter()
            model.generate(z)
            sync(device)
            times.append(time.perf_counter() - t)
        out[f"batch_{batch}_ms"] = 1e3 * statistics.median(times)
    return out


def markdown(result: dict) -> str:
    c, c16 = result["ceilings"], result["ceilings_bf16"]
    host = f"{result.get('cpu_model') or result['hardware']}, {result['cpus']} cores"
    where = f"{result['hardware']}, host {host}" if result["device"] == "cuda" else host
    lines = [
        f"### {result['device']} ({where}), {result['date']}",
        "",
        f"torch {result['torch']}. Float32 ceilings: matrix product {c['matmul']:.0f} GFLOP/s, "
        f"3x3 convolution {c['conv3x3']:.0f} GFLOP/s; bf16 ceilings {c16['matmul']:.0f} and "
        f"{c16['conv3x3']:.0f} GFLOP/s. G(z) at 64x64, n=64: one image "
        f"{result['generate']['batch_1_ms']:.1f} ms, 64 images "
        f"{result['generate']['batch_64_ms']:.1f} ms.",
        *(
            ["", "**A dry run: toy sizes on the CPU, no speed measured.**"]
            if result.get("dry_run")
            else []
        ),
        "",
        grid_table(result),
    ]
    extra = [r for r in result["rows"] if "graphed" in r or "reduce-overhead" in r]
    if extra:
        lines += ["", graphed_table(result)]
    lines += [f"\n{line}" for line in target_lines(result)]
    lines += [
        "",
        "reference: plain eager float32 as peer code writes it (`bench/reference.py`). "
        f"began_core: the step `train` runs by default, here: {result['default_path']}"
        + (
            "; launched eagerly (`train` on one CUDA process replays it as one graph: graphed). "
            if extra
            else ". "
        )
        + "fast: every option that pays (`--amp --channels-last --fused-adam`, and "
        "`--compile` on CUDA). Speed-ups are images/s over the reference's. Each step's "
        "shares are of the ceilings of its own precision: bf16 where it ran under bf16 "
        "autocast, float32 otherwise. They count a step's FLOPs as direct "
        "convolutions and matrix products (torch's FlopCounterMode); convolution algorithms "
        "that need fewer multiplications can pass 100%.",
    ]
    return "\n".join(lines) + "\n"


def profile_step(device: torch.device, out_dir: Path | None, dry_run: bool = False) -> dict:
    """torch.profiler over a few steps of the graphed and the eager default step at 64x64,
    n=64, batch 16 (a toy size in a dry run): per step, the kernels launched, the GPU's busy
    time and the host's time; the table by operator into OUT/profile-<variant>.txt."""
    from torch.profiler import ProfilerActivity, profile

    res, n, batch, steps = (32, 8, 4, 3) if dry_run else (64, 64, 16, 20)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    summary: dict = {"config": [res, n, batch], "steps": steps, "device": hardware_name(device)}
    makers = {
        "graphed": lambda m: GraphedStep(TrainStep(m, TrainConfig(batch_size=batch), device)),
        "eager": lambda m: TrainStep(m, TrainConfig(batch_size=batch), device),
    }
    for name, make in makers.items():
        torch.manual_seed(0)
        step = make(BEGAN(ModelConfig(resolution=res, n=n)).to(device))
        for t in range(8):  # warm-up, and the capture
            step(x, t)
        sync(device)
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for t in range(8, 8 + steps):
                step(x, t)
            sync(device)
        wall = (time.perf_counter() - start) / steps
        events = prof.key_averages()
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        busy = sum(e.device_time for e in kernels) / 1e3 / steps if kernels else 0.0
        launches = sum(e.count for e in events if "LaunchKernel" in e.key or "GraphLaunch" in e.key)
        summary[name] = {
            "step_ms": 1e3 * wall,
            "kernels_per_step": len(kernels) / steps,
            "gpu_busy_ms_per_step": busy,
            "launch_calls_per_step": launches / steps,
            "captured": bool(getattr(step, "captured", False)),
        }
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        table = events.table(sort_by=sort, row_limit=40)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"profile-{name}.txt").write_text(table + "\n")
        print(json.dumps({name: summary[name]}), flush=True)
    if out_dir is not None:
        (out_dir / "profile.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small CPU grid, results printed only")
    p.add_argument("--device", default="all", help="cpu, cuda, or all (default)")
    p.add_argument(
        "--out-dir", type=Path, default=None, help="default bench/results (none with --quick)"
    )
    p.add_argument("--name", default=None, help="results file stem (default: the device type)")
    p.add_argument(
        "--min-s", type=float, default=3.0, help="time each configuration at least this long"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--max-step-s", type=float, default=30.0, help="skip configurations estimated slower"
    )
    p.add_argument("--profile", action="store_true", help="also profile the graphed step")
    p.add_argument("--profile-only", action="store_true", help="only the profile")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="every stage at a toy size on the CPU, in seconds: checks the code, measures nothing",
    )
    args = p.parse_args()
    if args.quick or args.dry_run:
        args.min_s, args.warmup = min(args.min_s, 0.2 if args.dry_run else 1.0), 1
    grid = DRY if args.dry_run else QUICK if args.quick else FULL
    devices = [torch.device("cpu")]
    if args.device == "cuda" and not args.dry_run:
        if not torch.cuda.is_available():
            print("error: --device cuda, but torch sees no CUDA device here.", file=sys.stderr)
            return 2
        devices, grid = [torch.device("cuda")], CUDA_GRID
    elif args.device == "all" and torch.cuda.is_available() and not args.dry_run:
        devices = [*devices, torch.device("cuda")]
    out_dir = args.out_dir or (
        None if args.quick or args.dry_run else Path(__file__).parent / "results"
    )

    for device in devices if not args.quick else devices[:1]:
        if args.profile or args.profile_only:
            profile_step(device, out_dir, args.dry_run)
        if args.profile_only:
            continue
        small = args.dry_run
        ceiling = {
            "float32": ceilings(device, small=small),
            "bf16": ceilings(device, torch.bfloat16, small=small),
        }
        result = {
            "device": device.type,
            "hardware": hardware_name(device),
            "machine": platform.machine(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "native_bf16": native_bf16() if device.type == "cpu" else None,
            "default_path": resolve(TrainConfig(graph=False), device).describe(),
            "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
            **({"dry_run": True} if args.dry_run else {}),
            "ceilings": ceiling["float32"],
            "ceilings_bf16": ceiling["bf16"],
            "generate": generation_latency(device, repeats=5 if small else 50, small=small),
            "rows": [],
        }
        for res in grid["resolution"]:
            for n in grid["n"]:
                for batch in grid["batch"]:
                    row = bench_config(res, n, batch, device, args, ceiling)
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
                    if out_dir is not None:  # partial results as they come
                        result["targets"] = targets(result)
                        write_results(
                            out_dir / (args.name or device.type), result, markdown(result)
                        )
        result["targets"] = targets(result)
        table = markdown(result)
        print(table)
        if out_dir is not None:
            write_results(out_dir / (args.name or device.type), result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The design search behind the classroom's default 2-D BEGAN: train each variant and print
its modes covered, high-quality share, final k_t and L(x), as a Markdown table.

    python scripts/classroom_search.py                 # the table in docs/classroom.md
    python scripts/classroom_search.py --only blob     # variants whose name contains "blob"
    python scripts/classroom_search.py --pack          # the packing search (PACK_VARIANTS)
    python scripts/classroom_search.py --pack --best --seeds 0 1 2   # its best, more seeds
"""

from __future__ import annotations

import argparse
import time

import torch

from began_core.classroom import points
from began_core.classroom.began2d import Classroom, Design, Knobs

DEFAULT_KNOBS = {"gamma": 0.9, "lambda_k": 0.1}  # the page's first default; --gammas sets gamma
NEW_USER = {"gamma": 0.5, "lambda_k": 0.01}  # what a variant starts from
B, T, S = {"blob": 2.0}, {"bounded": True}, {"spread": 0.5}
# name -> (dataset, Design changes, Knobs changes, steps); rows of docs/classroom.md's table.
VARIANTS: dict[str, tuple[str, dict, dict, int]] = {
    "point, code 2": ("ring", {"view": "point", "code": 2}, {}, 3000),
    "point, code 1": ("ring", {"view": "point", "code": 1}, {}, 3000),
    "point, code 1, G spread, lambda_k 0.1": (
        "ring",
        {"view": "point", "code": 1, **S},
        {"lambda_k": 0.1},
        3000,
    ),
    "blob 1px": ("ring", {}, {}, 3000),
    "blob 1px, gamma 0.5, lambda_k 1": ("ring", {}, {"lambda_k": 1.0}, 3000),
    "blob 1px, gamma 0.7, lambda_k 1": ("ring", {}, {"gamma": 0.7, "lambda_k": 1.0}, 3000),
    "blob 1px, gamma 0.9, lambda_k 1": ("ring", {}, {"gamma": 0.9, "lambda_k": 1.0}, 3000),
    "blob 1px, gamma 1.0, lambda_k 1": ("ring", {}, {"gamma": 1.0, "lambda_k": 1.0}, 3000),
    "blob 1px, gamma 0.9, lambda_k 0.1": ("ring", {}, DEFAULT_KNOBS, 3000),
    "blob 1px, gamma 1.0, lambda_k 0.1": ("ring", {}, {"gamma": 1.0, "lambda_k": 0.1}, 3000),
    "blob 1px, 5 D steps, gamma 0.7, lambda_k 0.1": (
        "ring",
        {"d_steps": 5},
        {"gamma": 0.7, "lambda_k": 0.1},
        1000,
    ),
    "blob 2px, gamma 0.7, lambda_k 0.1": ("ring", B, {"gamma": 0.7, "lambda_k": 0.1}, 3000),
    "blob 2px, code 2, gamma 0.7, lambda_k 0.1": (
        "ring",
        {**B, "code": 2},
        {"gamma": 0.7, "lambda_k": 0.1},
        3000,
    ),
    "blob 2px, width 128, gamma 0.7, lambda_k 0.1": (
        "ring",
        {**B, "width": 128},
        {"gamma": 0.7, "lambda_k": 0.1},
        3000,
    ),
    "blob 3px": ("ring", {"blob": 3.0}, {}, 3000),
    "blob 3px, gamma 1.0, lambda_k 0.1": (
        "ring",
        {"blob": 3.0},
        {"gamma": 1.0, "lambda_k": 0.1},
        3000,
    ),
    "blob 3px, code 2, lambda_k 0.1": ("ring", {"blob": 3.0, "code": 2}, {"lambda_k": 0.1}, 3000),
    "blob 3px, G lr 1e-4, gamma 0.7, lambda_k 0.1": (
        "ring",
        {"blob": 3.0},
        {"gamma": 0.7, "lambda_k": 0.1, "lr_G": 1e-4},
        3000,
    ),
    "blob 2px, G spread, lambda_k 0.1": ("ring", {**B, **S}, {"lambda_k": 0.1}, 3000),
    "blob 3px, G spread, lambda_k 0.1": ("ring", {"blob": 3.0, **S}, {"lambda_k": 0.1}, 3000),
    "blob 2px, G spread": ("ring", {**B, **S}, {}, 3000),
    "blob 2px, G spread, lambda_k 0.001": ("ring", {**B, **S}, {"lambda_k": 0.001}, 3000),
    "blob 2px, G tanh": ("ring", {**B, **T}, {}, 3000),
    "blob 1px, G spread + tanh": ("ring", {**S, **T}, {}, 3000),
    "blob 2px, G spread + tanh": ("ring", {**B, **S, **T}, {}, 3000),
    "blob 3px, G spread + tanh": ("ring", {"blob": 3.0, **S, **T}, {}, 3000),
    "blob 2px, G spread + tanh, G lr 1e-4": ("ring", {**B, **S, **T}, {"lr_G": 1e-4}, 3000),
    "blob 2px, G spread + tanh, G lr 1e-4, gamma 0.9": (
        "ring",
        {**B, **S, **T},
        {"lr_G": 1e-4, "gamma": 0.9},
        3000,
    ),
    "blob 2px, G spread + tanh, 5 D steps": ("ring", {**B, **S, **T, "d_steps": 5}, {}, 1500),
    "blob 2px, G spread + tanh, 5 D steps, gamma 0.9": (
        "ring",
        {**B, **S, **T, "d_steps": 5},
        {"gamma": 0.9},
        1500,
    ),
    "blob 2px, G spread + tanh, 500 D steps first, gamma 0.9, lambda_k 0.1": (
        "ring",
        {**B, **S, **T, "warmup": 500},
        DEFAULT_KNOBS,
        3000,
    ),
    "blob 1px, G spread + tanh, 500 D steps first, gamma 0.9, lambda_k 0.1": (
        "ring",
        {**S, **T, "warmup": 500},
        DEFAULT_KNOBS,
        3000,
    ),
}

# Packing: D auto-encodes one image per `pack` points (the normalised sum of their blobs).
ST = {"spread": 0.5, "bounded": True}
PACK_VARIANTS: dict[str, tuple[str, dict, dict, int]] = {  # the rows of docs/classroom.md's table
    "pack 4, mean, blob 1px": ("ring", {"pack": 4}, {}, 3000),
    "pack 4, mean, blob 1px, lambda_k 0.1": ("ring", {"pack": 4}, {"lambda_k": 0.1}, 3000),
    "pack 8, mean, blob 1px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 8, **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 8, clamp, blob 1px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 8, "pack_norm": "clamp", **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 16, mean, blob 1px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 16, **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 32, mean, blob 1px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 32, **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 4, mean, blob 2px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 4, "blob": 2.0, **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 8, mean, blob 2px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 8, "blob": 2.0, **ST},
        {"lambda_k": 0.1},
        4000,
    ),
    "pack 16, mean, blob 2px, G spread + tanh, lambda_k 0.1": (
        "ring",
        {"pack": 16, "blob": 2.0, **ST},
        {"lambda_k": 0.1},
        1500,
    ),
    "pack 8, mean, blob 2px, G spread + tanh, lambda_k 0.1, D lr 1e-4": (
        "ring",
        {"pack": 8, "blob": 2.0, **ST},
        {"lambda_k": 0.1, "lr_D": 1e-4},
        3000,
    ),
    "pack 16, mean, blob 1px, G spread + tanh, lambda_k 0.1, D lr 1e-4": (
        "ring",
        {"pack": 16, **ST},
        {"lambda_k": 0.1, "lr_D": 1e-4},
        3000,
    ),
}
# The best of them (the last row), run again on more seeds and gammas by --pack --best.
BEST_PACK = "pack 16, mean, blob 1px, G spread + tanh, lambda_k 0.1, D lr 1e-4"


def run(dataset: str, design: dict, knobs: dict, steps: int, seed: int) -> dict:
    knobs = Knobs(**{**NEW_USER, **knobs})
    model = Classroom(points.make(dataset), Design(**design), knobs, seed=seed)
    start, progress = time.perf_counter(), []
    for done in range(0, steps, 500):
        model.step(min(500, steps - done))
        progress.append(model.coverage().modes_covered)
    seconds = time.perf_counter() - start
    cov = model.coverage()
    tail = model.history[-100:]
    return {
        "modes": f"{cov.modes_covered}/{cov.modes}",
        "hq": cov.high_quality,
        "k_t": sum(r["k_t"] for r in tail) / len(tail),
        "L_x": sum(r["L_x"] for r in tail) / len(tail),
        "ratio": sum(r["L_G"] for r in tail) / max(1e-12, sum(r["L_x"] for r in tail)),
        "s": seconds,
        "progress": "/".join(str(c) for c in progress),  # modes covered every 500 steps
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the variants whose name contains this")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--gammas",
        action="store_true",
        help="instead: the default design at gamma 0.3, 0.5, 0.7 on the ring and the grid",
    )
    parser.add_argument("--pack", action="store_true", help="the packing search instead")
    parser.add_argument(
        "--best", action="store_true", help="with --pack: the best pack setting, gammas 0.3-0.7"
    )
    parser.add_argument("--steps", type=int, default=0, help="override every variant's steps")
    parser.add_argument("--shard", type=int, nargs=2, default=[0, 1], metavar=("I", "N"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| variant | data | steps | seed | modes covered | high-quality share | k_t | L(x) "
        "| L(G)/L(x) | s | modes every 500 steps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    variants = VARIANTS
    if args.gammas:
        variants = {
            f"default, gamma {g}, {data}": (data, {}, {**DEFAULT_KNOBS, "gamma": g}, 3000)
            for data in ("ring", "grid")
            for g in (0.3, 0.5, 0.7)
        }
    if args.pack:
        variants = PACK_VARIANTS
    if args.pack and args.best:
        _, design, knobs, _ = PACK_VARIANTS[BEST_PACK]
        variants = {
            f"best pack, gamma {g}, {data}": (data, design, {**knobs, "gamma": g}, 3000)
            for data in ("ring", "grid")
            for g in (0.3, 0.5, 0.7)
        }
    chosen = [item for item in variants.items() if args.only in item[0]]
    for name, (dataset, design, knobs, steps) in chosen[args.shard[0] :: args.shard[1]]:
        steps = args.steps or steps
        for seed in args.seeds:
            r = run(dataset, design, knobs, steps, seed)
            print(
                f"| {name} | {dataset} | {steps:,} | {seed} | {r['modes']} | {r['hq']:.2f} | "
                f"{r['k_t']:.3f} | {r['L_x']:.4f} | {r['ratio']:.2f} | {r['s']:.0f} | "
                f"{r['progress']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

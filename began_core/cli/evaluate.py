"""`python -m began_core evaluate`: offline quality metrics of checkpoints, printed and as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import check_seed
from ..evaluation import evaluate as evaluation
from ..evaluation.evaluate import DEFAULT_N, evaluate
from ..evaluation.report import format_table, quality_table
from ..flags import seed_flag


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    e = subparsers.add_parser(
        "evaluate",
        help="offline quality metrics (SWD, classifier FD, class coverage, diversity)",
        description=evaluation.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument(
        "checkpoints",
        nargs="+",
        metavar="CHECKPOINT_OR_RUN",
        help="checkpoint folder, run directory, or Hub repo id; several are compared in a "
        "markdown table (e.g. one per gamma, or one run's checkpoints by step)",
    )
    e.add_argument(
        "--n",
        type=int,
        default=DEFAULT_N,
        help=f"generated images, and real ones (default {DEFAULT_N}; at most half the dataset)",
    )
    e.add_argument(
        "--data",
        help="dataset of the real images (default: the run's, the model card's, or fluent-faces)",
    )
    e.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the results to this JSON file (a list when several checkpoints)",
    )
    e.add_argument("--device", default="cpu")
    e.add_argument(
        "--seed", type=seed_flag, default=0, help="seed of z and of the real subsets (default 0)"
    )
    e.add_argument(
        "--classifier",
        type=Path,
        help="classifier folder (default: began_core/assets/classifiers/<data>-<resolution>)",
    )
    e.add_argument(
        "--resolution",
        type=int,
        help="score at this size (default: the model's): generated images are resized as the "
        "built-in data are, so generators of different sizes meet one classifier",
    )
    e.add_argument(
        "--generator",
        default="auto",
        help="G, G_ema, G_ema:KIMG (an average kept with train --ema-sweep), or auto (default: "
        "the one the checkpoint names, else G)",
    )
    return e


def main(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    results = []
    for checkpoint in args.checkpoints:
        result = evaluate(
            checkpoint,
            n=args.n,
            data=args.data,
            device=args.device,
            seed=args.seed,
            classifier=args.classifier,
            resolution=args.resolution,
            generator=args.generator,
        )
        print(format_table(result), end="\n\n", flush=True)
        results.append(result)
    if len(results) > 1:
        print(quality_table([(str(c), r) for c, r in zip(args.checkpoints, results, strict=True)]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = results[0] if len(results) == 1 else results
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0

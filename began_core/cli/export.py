"""`python -m began_core export`: a run's checkpoint as a shareable model repository."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import hub
from ..publish import export as publishing
from ..publish.export import export


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    e = subparsers.add_parser(
        "export",
        help="a run's checkpoint as a shareable model repository (float16, card, metrics)",
        description=publishing.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or checkpoint")
    e.add_argument("out", type=Path, metavar="OUT", help="folder to write (replaced if present)")
    e.add_argument(
        "--step",
        type=int,
        help="the run's checkpoint at this step (default: its best-scoring one where the run "
        "kept one with --score-every, else its latest)",
    )
    e.add_argument(
        "--latest", action="store_true", help="the latest checkpoint even where a best one is kept"
    )
    e.add_argument("--float32", action="store_true", help="keep float32 weights (default float16)")
    e.add_argument("--generator-only", action="store_true", help="leave out D's weights")
    e.add_argument("--no-evaluate", action="store_true", help="skip the quality metrics")
    e.add_argument(
        "--history",
        type=int,
        nargs="*",
        default=[],
        metavar="STEP",
        help="also evaluate the run's checkpoints at these steps (quality against steps)",
    )
    e.add_argument("--n", type=int, help="images per set for the metrics (see evaluate)")
    e.add_argument(
        "--command",
        dest="train_command",
        help="the training command to state (default: the run's own)",
    )
    e.add_argument("--note", default="", help="a paragraph for the model card's Notes")
    e.add_argument(
        "--generator",
        default="auto",
        help="the generator the export names for use, its samples and metrics: G, G_ema, "
        "G_ema:KIMG (a swept average, exported as G_ema) or auto (default: the checkpoint's, "
        "which for a best checkpoint is whichever of G and G_ema scored better)",
    )
    return e


def _interrupted(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through export's clean-up of its temp folder


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    out = export(
        args.checkpoint,
        args.out,
        step=args.step,
        latest=args.latest,
        dtype=torch.float32 if args.float32 else torch.float16,
        generator_only=args.generator_only,
        evaluate=not args.no_evaluate,
        history=args.history,
        n=args.n,
        command=args.train_command,
        note=args.note,
        generator=args.generator,
    )
    record = json.loads((out / hub.TRAINING).read_text(encoding="utf-8"))
    size = (out / hub.WEIGHTS).stat().st_size / 2**20
    print(
        f"wrote {out} (step {record['step']}, {record['generator']}, {size:.1f} MiB of weights)",
        file=sys.stderr,
    )
    return 0

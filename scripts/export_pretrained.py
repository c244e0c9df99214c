"""Rebuild the shipped generators, pretrained/<data>-<resolution>-gamma{0.3,0.5,0.7}, from
three training runs stopped at the same step, and print the README's gamma table.

    # the three runs (same seed, data, architecture and steps; only gamma differs), started
    # from the faces recipe (`--preset faces-64`, began_core/presets.py): that is what
    # scripts/train_gammas.sh runs 60000 64 does, and resumes when run again
    for g in 0.3 0.5 0.7; do
      python -m began_core train --preset faces-64 --gamma $g --seed 0 --out runs/gamma$g \\
        --steps 20000 --checkpoint-every 500 --keep-checkpoints 400 --quiet &
    done
    wait
    # then either ship a given step:
    python scripts/export_pretrained.py runs --step 15000
    # or score the runs' checkpoints (G and G_ema, and at the shipped size against the
    # shipped generators) and ship the step the scores pick (see `select`: BEGAN runs drift
    # into mode collapse and out again, so the last step is not always the best one):
    python scripts/score_runs.py runs --every 1000 --json docs/scores-64.json
    python scripts/export_pretrained.py runs --select docs/scores-64.json

Each export states the exact training command with `--steps` set to the step exported: the
step count enters neither the learning-rate rule nor the data order, so a run stopped there
and a run told to end there are the same run. Its card says where the run departs from the
paper's setup (`--preset paper`) and why, from what the run recorded, not from this script.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from began_core.checkpoints.hub import load, read_training
from began_core.evaluation import report
from began_core.evaluation.report import quality_table
from began_core.presets import PRESETS
from began_core.publish.export import export
from began_core.runs.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]

GAMMAS = ("0.3", "0.5", "0.7")
PAPER = PRESETS["paper"].flags  # what a departure is measured from
HISTORY = (1000, 2000, 4000, 8000, 16000, 32000, 64000)  # quality against steps


def stated_command(config: dict, step: int, name: str) -> str:
    words = shlex.split(config["meta"]["command"])
    for flag, value in (("--out", f"runs/{name}"), ("--steps", str(step))):
        words[words.index(flag) + 1] = value
    return shlex.join(words)


def note(run: RunDir, config: dict, step: int, selected: bool, generator: str = "G") -> str:
    meta, lr, eta = config["meta"], config["train"]["lr"], config["train"]["eta"]
    last = max(s for s, _ in run.checkpoints())
    why_lr = (
        f"Learning rate {lr:g}, below the paper's {PAPER['lr']:g}, to slow the drift into mode "
        "collapse. "
        if lr < PAPER["lr"]
        else ""
    )
    # Why each departure from the paper: what it does, not the figures that showed it; those
    # are in docs/results.md ("What it took"), measured once.
    why_eta = (
        "eta 2 (squared error, the paper's other norm): with eta 1 on this white-background "
        "data G settled on a grey texture that D reconstructs more easily than real images, "
        "so at gamma 0.3 and 0.5 k_t stayed at or near 0 and G drew no faces. "
        if eta == 2 != PAPER["eta"]
        else ""
    )
    lambda_k = config["train"]["lambda_k"]
    why_lambda_k = (
        f"lambda_k {lambda_k:g}, not the paper's {PAPER['lambda_k']:g}: squared errors are "
        "smaller than absolute ones, and so is each step of the k_t controller; with the "
        "paper's k_t moved too slowly to keep G at gamma 0.3 from collapsing onto one image. "
        if lambda_k != PAPER["lambda_k"]
        else ""
    )
    how = (
        f"the run went on to step {last:,}; this is its checkpoint at step {step:,}: of the "
        "steps where each of the three gamma runs (with the better of G and G_ema on its own "
        "held-out score) beats the shipped generator of its gamma on classifier Frechet "
        "distance and class coverage, the one with the lowest held-out score averaged over "
        "the three, since BEGAN runs drift into mode collapse and out again"
        if selected
        else f"the run was stopped at step {step:,}"
    )
    kimg = config["train"].get("ema_kimg") or 0
    why_generator = (
        f"The samples and metrics are of G_ema, the moving average of G's weights (half-life "
        f"{kimg:g} thousand images, ramped up), which scored better than G on the run's "
        "held-out images at this step; the folder holds G as well. "
        if generator == "G_ema"
        else "The samples and metrics are of G"
        + (
            ", which scored better than G_ema on the run's held-out images at this step. "
            if kimg
            else ". "
        )
    )
    fast = meta.get("fast_path", {}).get("summary") or (
        "bf16 autocast and channels_last (`--amp --channels-last`)"
    )
    train, data, resolution = config["train"], config["data"], config["model"]["resolution"]
    why_augment = (
        f"Small-data recipe: everything D sees, in D's "
        f"step and in G's, goes through the same random differentiable augmentation "
        f"({train['augment'].replace(',', ' + ')}, applied with probability "
        f"{train['augment_p']:g}); {data['heldout']:.0%} of the images "
        f"({meta.get('heldout_images', 'a few')}) are held out, D never trains on them, and G "
        f"is scored on them every {train['score_every']:,} steps. "
        if train.get("augment")
        else ""
    )
    hardware = str(meta.get("hardware", "hardware not recorded"))
    scope = (
        "32x32 is what a CPU affords: read these as classroom models, not as the paper's 64x64 "
        "and 128x128 results."
        if resolution <= 32
        else f"The paper trained {resolution}x{resolution} for 200k steps and more on a GPU; "
        f"these are {step:,} steps{' on a CPU' if 'CPU' in hardware else ''}, so read them as "
        "small models of a small dataset, not "
        "as the paper's results."
    )
    where = (
        f"Trained on a CPU, not a GPU ({hardware} for each run), the three gamma runs side by "
        "side,"
        " so the wall time is that of a shared machine."
        if "CPU" in hardware
        else f"Trained on {hardware}, the three gamma runs side by side on it, so the wall "
        "time is that of a shared device."
    )
    return (
        f"{where} Fast path: {fast}, with the losses and k_t in "
        "float32. Weights initialised "
        "Glorot-uniform with zero biases (`model.glorot_init`), without which G starts on one "
        f"image and every gamma collapsed. {why_eta}{why_lambda_k}{why_lr}{why_augment}"
        f"Schedule and stop: {how}. {why_generator}The step count enters neither the "
        "learning-rate rule nor the data order, so the command above reproduces these weights "
        f"(up to floating-point non-determinism). {scope} What each choice above changed, "
        "and how the step was chosen, is measured in docs/results.md of BEGAN Studio."
    )


def select(scores: dict, every: int) -> tuple[int, dict[str, str], str]:
    """The step to ship and its table: `report.select_step` (docs/results.md prints the same
    table from docs/scores-64.json)."""
    return report.select_step(scores, every, GAMMAS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", type=Path, help="folder holding gamma0.3, gamma0.5 and gamma0.7")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--step", type=int, help="the step to ship, the same for all")
    which.add_argument(
        "--select",
        type=Path,
        metavar="SCORES_JSON",
        help="ship the step a score_runs.py results file picks (see select)",
    )
    p.add_argument(
        "--generator",
        default="auto",
        help="with --step: G, G_ema or auto (default: the checkpoint's own choice)",
    )
    p.add_argument(
        "--every", type=int, default=1000, help="with --select: the checkpoint steps compared"
    )
    p.add_argument("--out", type=Path, default=ROOT / "pretrained")
    p.add_argument("--n", type=int, default=None, help="images per set for evaluate (default 1024)")
    args = p.parse_args()

    generators = dict.fromkeys(GAMMAS, args.generator)
    if args.select:
        args.step, generators, table = select(json.loads(args.select.read_text()), args.every)
        print(f"held-out score and comparison by step:\n\n{table}\n")

    shipped = []
    for gamma in GAMMAS:
        run = RunDir(args.runs / f"gamma{gamma}")
        config = run.read_config_dict()
        name = f"{config['data']['source']}-{config['model']['resolution']}-gamma{gamma}"
        have = {s for s, _ in run.checkpoints()}
        if generators[gamma] == "auto":  # the one the checkpoint names, said in the note
            generators[gamma] = load(dict(run.checkpoints())[args.step]).recommended
        out = export(
            run.path,
            args.out / name,
            step=args.step,
            history=[s for s in HISTORY if s < args.step and s in have],
            command=stated_command(config, args.step, name),
            note=note(run, config, args.step, bool(args.select), generators[gamma]),
            generator=generators[gamma],
            n=args.n,
        )
        print(f"wrote {out}", file=sys.stderr)
        shipped.append((f"gamma {gamma}", read_training(out)["evaluation"]))

    # The README table: export scored the written weights with `evaluate`'s defaults, the
    # numbers `python -m began_core evaluate` prints for these folders.
    print(quality_table(shipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())

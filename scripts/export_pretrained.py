"""Rebuild the shipped generators, pretrained/<data>-32-gamma{0.3,0.5,0.7}, from three training
runs stopped at the same step, and print the README's gamma table.

    # the three runs (same seed, data, architecture and steps; only gamma differs); the
    # 64x64 ones with the small-data recipe: scripts/train_gammas.sh runs 30000 64
    for g in 0.3 0.5 0.7; do
      python -m began_core train --data fluent-faces --out runs/gamma$g --steps 4000 \\
        --resolution 32 --filters 32 --gamma $g --eta 2 --lambda-k 0.01 --seed 0 --amp \\
        --channels-last --log-every 50 --sample-every 1000 --checkpoint-every 250 \\
        --keep-checkpoints 100 --quiet &
    done
    wait
    # then either ship a given step:
    python scripts/export_pretrained.py runs --step 3000
    # or the step, among the checkpoints after step 1,000 that all three runs have, where the
    # runs fall short of an untrained G or of their own 1,000-step checkpoint (a short run)
    # on the fewest metrics, then with the lowest classifier Frechet distance averaged over
    # the three gammas (BEGAN runs drift into mode collapse and out again, so the last step
    # is not always the best one):
    python scripts/export_pretrained.py runs --select --every 250

Each export states the exact training command with `--steps` set to the step exported: the
step count enters neither the learning-rate rule nor the data order, so a run stopped there
and a run told to end there are the same run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from began_core.evaluate import (  # noqa: E402
    METRIC_KEYS,
    evaluate,
    quality_table,
    shortfalls,
    untrained_baseline,
)
from began_core.export import export  # noqa: E402
from began_core.hub import read_training  # noqa: E402
from began_core.runs import RunDir  # noqa: E402

GAMMAS = ("0.3", "0.5", "0.7")
HISTORY = (1000, 2000, 4000, 8000, 16000, 32000, 64000)  # quality against steps


def stated_command(config: dict, step: int, name: str) -> str:
    words = shlex.split(config["meta"]["command"])
    for flag, value in (("--out", f"runs/{name}"), ("--steps", str(step))):
        words[words.index(flag) + 1] = value
    return shlex.join(words)


def note(run: RunDir, config: dict, step: int, selected: bool) -> str:
    meta, lr, eta = config["meta"], config["train"]["lr"], config["train"]["eta"]
    last = max(s for s, _ in run.checkpoints())
    why_lr = (
        f"Learning rate {lr:g}, below the paper's 1e-4, to slow the drift into mode collapse. "
        if lr < 1e-4
        else ""
    )
    why_eta = (
        "eta 2 (squared error, the paper's other norm): with eta 1 on this white-background "
        "data, G's images settled on a grey texture that D reconstructs with 0.35 to 0.5 "
        "times the error of real images, so at gamma 0.3 and 0.5 k_t stayed at or near 0 "
        "and G drew no faces. "
        if eta == 2
        else ""
    )
    lambda_k = config["train"]["lambda_k"]
    why_lambda_k = (
        f"lambda_k {lambda_k:g}, not the paper's 0.001: squared errors are 3 to 5 times "
        "smaller than absolute ones here, and so is each step of the k_t controller; with "
        "0.001, k_t stayed between 0.02 and 0.03 and G collapsed onto one image by step "
        "3,000 at gamma 0.3, while with 0.01 it drew varied figures. "
        if lambda_k != 0.001
        else ""
    )
    how = (
        f"the run went on to step {last:,}; this is its checkpoint at step {step:,}, the step "
        "(of those all three gamma runs have) where the runs fall short of an untrained G or "
        "of their first checkpoint on the fewest metrics, then with the lowest classifier "
        "Frechet distance averaged over the three, since BEGAN runs drift into mode collapse "
        "and out again"
        if selected
        else f"the run was stopped at step {step:,}"
    )
    fast = meta.get("fast_path", {}).get("summary") or (
        "bf16 autocast and channels_last (`--amp --channels-last`)"
    )
    train, data, resolution = config["train"], config["data"], config["model"]["resolution"]
    why_augment = (
        f"Small-data recipe (the README's 15,000-step comparison): everything D sees, in D's "
        f"step and in G's, goes through the same random differentiable augmentation "
        f"({train['augment'].replace(',', ' + ')}, applied with probability "
        f"{train['augment_p']:g}); {data['heldout']:.0%} of the images "
        f"({meta.get('heldout_images', 'a few')}) are held out, D never trains on them, and G "
        f"is scored on them every {train['score_every']:,} steps. "
        if train.get("augment")
        else ""
    )
    scope = (
        "32x32 is what a CPU affords: read these as classroom models, not as the paper's 64x64 "
        "and 128x128 results."
        if resolution <= 32
        else f"The paper trained {resolution}x{resolution} for 200k steps and more on a GPU; "
        f"these are {step:,} CPU steps, so read them as small models of a small dataset, not "
        "as the paper's results."
    )
    return (
        f"Trained on a CPU, not a GPU: a 2-core x86_64 server CPU with native bf16, one torch "
        f"thread per run, the three gamma runs side by side ({meta['hardware']}), so the wall "
        f"time is that of a shared machine. Fast path: {fast}, with the losses and k_t in "
        "float32. Weights initialised "
        "Glorot-uniform with zero biases (`model.glorot_init`), without which G starts on one "
        f"image and every gamma collapsed. {why_eta}{why_lambda_k}{why_lr}{why_augment}"
        f"Schedule and stop: {how}. The step count enters neither the "
        "learning-rate rule nor the data order, so the command above reproduces these weights "
        f"(up to floating-point non-determinism). {scope}"
    )


SELECT_N = 256  # images per set when comparing steps (the shipped ones are scored with 1,024)


def select(runs: list[RunDir], every: int, short_run: int = HISTORY[0]) -> tuple[int, str]:
    """(step, markdown table): of the checkpoint steps (multiples of `every`) after
    `short_run` that all runs have, the one where the runs miss the fewest bars (beating an
    untrained G and the run's checkpoint at `short_run`, a short run, on every metric:
    `shortfalls`), then with the lowest mean classifier FD."""
    common = set.intersection(*({s for s, _ in r.checkpoints()} for r in runs))
    steps = [short_run, *sorted(s for s in common if s % every == 0 and s > short_run)]
    if short_run not in common or len(steps) < 2:
        raise SystemExit(
            f"the runs need a checkpoint at step {short_run:,} (the short run) and a later one "
            "in common"
        )
    configs = [r.read_config() for r in runs]
    baselines = [untrained_baseline(c.model, n=SELECT_N, data=c.data.source) for c in configs]
    scores: dict[int, list[dict]] = {}
    for step in steps:
        scores[step] = [evaluate(dict(r.checkpoints())[step], n=SELECT_N) for r in runs]
        fd = [r["classifier_fd"] for r in scores[step]]
        print(f"step {step}: classifier FD {fd}", file=sys.stderr, flush=True)
    short = scores[steps[0]]
    missed = {
        step: [
            [k for k in METRIC_KEYS if k in {*shortfalls(r, base), *shortfalls(r, first)}]
            for r, base, first in zip(scores[step], baselines, short, strict=True)
        ]
        for step in steps[1:]
    }
    fd = {step: [r["classifier_fd"] for r in scores[step]] for step in steps[1:]}
    best = min(steps[1:], key=lambda s: (sum(map(len, missed[s])), sum(fd[s])))
    head = " | ".join(f"gamma {g}" for g in GAMMAS)
    lines = [
        f"| step | {head} | mean | short of an untrained G or step {steps[0]:,} on |",
        "|" + " --- |" * (len(GAMMAS) + 3),
    ]
    for step in steps[1:]:
        cells = " | ".join(f"{v:.1f}" for v in fd[step])
        mark = " **(shipped)**" if step == best else ""
        short_of = "; ".join(
            f"{g}: {', '.join(m)}" for g, m in zip(GAMMAS, missed[step], strict=True) if m
        )
        lines.append(
            f"| {step:,}{mark} | {cells} | {sum(fd[step]) / len(runs):.1f} | {short_of or 'none'} |"
        )
    return best, "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", type=Path, help="folder holding gamma0.3, gamma0.5 and gamma0.7")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--step", type=int, help="the step to ship, the same for all")
    which.add_argument(
        "--select",
        action="store_true",
        help="ship the step that misses the fewest bars, then has the lowest mean classifier FD",
    )
    p.add_argument(
        "--every", type=int, default=1000, help="with --select: the checkpoint steps compared"
    )
    p.add_argument("--out", type=Path, default=ROOT / "pretrained")
    args = p.parse_args()

    if args.select:
        args.step, table = select([RunDir(args.runs / f"gamma{g}") for g in GAMMAS], args.every)
        print(f"classifier FD by step ({SELECT_N} images per set):\n\n{table}\n")

    shipped = []
    for gamma in GAMMAS:
        run = RunDir(args.runs / f"gamma{gamma}")
        config = run.read_config_dict()
        name = f"{config['data']['source']}-{config['model']['resolution']}-gamma{gamma}"
        have = {s for s, _ in run.checkpoints()}
        out = export(
            run.path,
            args.out / name,
            step=args.step,
            history=[s for s in HISTORY if s < args.step and s in have],
            command=stated_command(config, args.step, name),
            note=note(run, config, args.step, args.select),
        )
        print(f"wrote {out}", file=sys.stderr)
        shipped.append((f"gamma {gamma}", read_training(out)["evaluation"]))

    # The README table: export scored the written weights with `evaluate`'s defaults, the
    # numbers `python -m began_core evaluate` prints for these folders.
    print(quality_table(shipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())

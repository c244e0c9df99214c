"""Score every generator the gamma runs of a folder keep (G, G_ema and the averages of
`train --ema-sweep`) at every `--every` steps, into one results file, from which `--table`
prints docs/results.md's G against G_ema table and `export_pretrained.py --select` picks the step
to ship.

    scripts/train_gammas.sh runs/faces64 20000 64 --ema-kimg 1 --ema-sweep 0.5,2,5,10
    python scripts/score_runs.py runs/faces64 --every 1000 --json docs/scores-64.json
    python scripts/score_runs.py --table docs/scores-64.json

Per generator and step: the run's own held-out score (`heldout_fd`: the classifier Frechet
distance against the held-out images D never saw, as `train --score-every` keeps it) and
`evaluate`'s classifier Frechet distance, class coverage and SWD (`--n` images against as many
real ones). With `--compare R` (default 32), G and G_ema are also scored at R x R by `evaluate
--resolution R`, and so are the shipped generators of `--shipped` (under "reference"): the
comparison a larger generator must win before it replaces them. Rows already in the file are
kept, so the script can be run again as the runs go on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from began_core.checkpoints import generators
from began_core.checkpoints.hub import find_checkpoints, load, read_training
from began_core.data.sources import open_dataset
from began_core.evaluation.evaluate import evaluate
from began_core.evaluation.report import ema_table
from began_core.runs.run_dir import RunDir
from began_core.training import heldout
from began_core.training.scoring import HeldoutScore

ROOT = Path(__file__).resolve().parents[1]

GAMMAS = ("0.3", "0.5", "0.7")


def heldout_scorer(run: RunDir) -> HeldoutScore:
    """The score `train --score-every` keeps for this run: against its own held-out images."""
    config = run.read_config()
    m, d = config.model, config.data
    dataset = open_dataset(d.source, m.resolution, m.channels, celeba_crop=d.celeba_crop)
    _, held = heldout.split_dataset(dataset, d.heldout or 0.05, config.train.seed)
    return HeldoutScore.of_heldout(held, d.source, config.train.seed, m.Nz)


def _scores(result: dict, suffix: str = "") -> dict:
    return {
        f"classifier_fd{suffix}": round(result["classifier_fd"], 3),
        f"coverage{suffix}": result["coverage"],
        f"swd{suffix}": round(result["swd"], 2),
    }


def score(
    runs: list[RunDir],
    every: int,
    until: int,
    n: int,
    compare: int | None,
    shipped: Path,
    out: Path,
) -> dict:
    results = json.loads(out.read_text()) if out.is_file() else {}
    rows, reference = results.setdefault("rows", []), results.setdefault("reference", {})

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")

    if compare:
        for gamma in GAMMAS:
            # The generators shipped now, whatever their size, all scored at `compare`.
            for folder in [
                f for f in find_checkpoints(shipped) if f.name.endswith(f"-gamma{gamma}")
            ]:
                key = f"{folder.name}@{compare}"
                if key not in reference:
                    result = evaluate(folder, n=n, resolution=compare)
                    step = (read_training(folder) or {}).get("step")
                    reference[key] = {"gamma": float(gamma), "step": step, **_scores(result)}
                    save()
    done = {(r["run"], r["step"], r["generator"]) for r in rows}
    for run in runs:
        config, scorer = run.read_config(), None
        for step, checkpoint in run.checkpoints():
            if step % every or step > until:
                continue
            model = load(checkpoint)
            for which in generators.available(model, checkpoint):
                if (run.path.name, step, which) in done:
                    continue
                start, scorer = time.time(), scorer or heldout_scorer(run)
                row = {
                    "run": run.path.name,
                    "gamma": config.train.gamma,
                    "resolution": config.model.resolution,
                    "ema_kimg": config.train.ema_kimg,
                    "step": step,
                    "generator": which,
                    "heldout_fd": round(scorer(generators.select(model, which, checkpoint)), 3),
                    **_scores(evaluate(checkpoint, n=n, generator=which)),
                    "n": n,
                }
                if compare and compare != config.model.resolution and ":" not in which:
                    at = evaluate(checkpoint, n=n, generator=which, resolution=compare)
                    row.update(_scores(at, f"_at{compare}"))
                rows.append(row)
                save()
                print(
                    f"{run.path.name} step {step} {which}: held-out FD {row['heldout_fd']}, "
                    f"FD {row['classifier_fd']} ({time.time() - start:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="?", type=Path, help="folder holding gamma0.3, 0.5 and 0.7")
    p.add_argument("--every", type=int, default=1000, help="checkpoint steps scored")
    p.add_argument("--until", type=int, default=10**9, help="last step scored")
    p.add_argument("--n", type=int, default=562, help="images per set for evaluate")
    p.add_argument("--compare", type=int, default=32, help="also score at this size (0: do not)")
    p.add_argument("--shipped", type=Path, default=ROOT / "pretrained")
    p.add_argument("--json", type=Path, help="results file (rows kept and added to)")
    p.add_argument("--table", type=Path, metavar="JSON", help="print the tables of a results file")
    args = p.parse_args()
    if args.table:
        rows = json.loads(args.table.read_text())["rows"]
        for key, what in (("heldout_fd", "held-out score"), ("classifier_fd", "classifier FD")):
            print(f"{what} (classifier Frechet distance, mean over gamma; lower is better):\n")
            print(ema_table(rows, key) + "\n")
        return 0
    if args.runs is None or args.json is None:
        p.error("give the runs folder and --json, or --table JSON")
    runs = [
        RunDir(args.runs / f"gamma{g}") for g in GAMMAS if RunDir(args.runs / f"gamma{g}").exists()
    ]
    score(runs, args.every, args.until, args.n, args.compare or None, args.shipped, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

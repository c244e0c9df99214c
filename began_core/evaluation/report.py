"""`evaluate` results for people: the one-checkpoint report `python -m began_core evaluate`
prints, and the markdown quality table of model cards, the README and the comparison scripts."""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Sequence
from typing import Any

ROWS = (  # key, label, which way is better
    ("swd", "SWD x1e3, mean of levels", "lower"),
    ("classifier_fd", "classifier Frechet distance", "lower"),
    ("coverage", "class coverage", "higher"),
    ("kl", "class KL divergence, nats", "lower"),
    ("diversity", "diversity, classifier features", "near 1"),
    ("pixel_diversity", "diversity, 16x16 pixels", "near 1"),
)


def quality_table(rows: Sequence[tuple[str, dict[str, Any]]], *, reference: bool = True) -> str:
    """A markdown table of `evaluate` results, one row per (label, result), one column per
    metric; with `reference`, a last row for the held-out real images scored as if generated."""
    head = "| | " + " | ".join(f"{label} ({better})" for _, label, better in ROWS) + " |"
    lines = [head, "|" + " --- |" * (len(ROWS) + 1)]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4g}" for k, *_ in ROWS) + " |")
    if reference and rows:
        ref = rows[-1][1]["reference"]
        lines.append(
            "| real images (held-out set) | " + " | ".join(f"{ref[k]:.4g}" for k, *_ in ROWS) + " |"
        )
    return "\n".join(lines)


def format_table(r: dict[str, Any]) -> str:
    ref = r["reference"]
    lines = [
        f"checkpoint  {r['checkpoint']}"
        + (f" (step {r['step']})" if r["step"] is not None else ""),
        f"data        {r['data']} ({r['data_from']}), {r['channels']}x{r['resolution']}x"
        f"{r['resolution']}, n = {r['n']} generated vs {r['n']} real, seed {r['seed']}",
        f"classifier  {r['classifier']} (held-out accuracy {r['classifier_test_accuracy']})",
    ]
    if r.get("model_resolution", r["resolution"]) != r["resolution"]:
        lines.append(
            f"            the model's {r['model_resolution']}x{r['model_resolution']} images "
            f"resized to {r['resolution']}x{r['resolution']}, as the real ones were"
        )
    if r["n"] < r["n_requested"]:
        lines.append(
            f"            n cut from {r['n_requested']} to {r['n']}: the real reference set "
            "must be disjoint from the real set"
        )
    lines += ["", f"{'metric':34s}{'generated':>12s}{'real data':>12s}   better"]
    for key, label, better in ROWS:
        lines.append(f"{label:34s}{r[key]:12.4g}{ref[key]:12.4g}   {better}")
        if key == "swd":
            for level, v in r["swd_levels"].items():
                lines.append(
                    f"{'  SWD level ' + level + 'px':34s}{v:12.4g}{ref['swd_levels'][level]:12.4g}"
                )
    fid = "n/a" if r["inception_fid"] is None else f"{r['inception_fid']:.4g}"
    lines += [
        f"{'Inception FID':34s}{fid:>12s}",
        "",
        "real data: a second, disjoint set of real images scored as if generated (what a",
        "perfect generator gets at this n). Classes generated: "
        f"{r['classes_generated']} of {r['classes_in_data']}.",
        *textwrap.wrap(r["inception_note"], 88),
        f"({r['seconds']:.0f} s)",
    ]
    return "\n".join(lines)


def _half_life(name: str, primary: float) -> float:
    """Where a generator sorts: G first, then the averages by half-life."""
    return -1.0 if name == "G" else primary if name == "G_ema" else float(name.split(":")[1])


def ema_table(rows: list[dict], key: str = "heldout_fd") -> str:
    """Per generator (G_ema by half-life) and step: the score averaged over the gamma runs, and
    in how many (gamma, step) cells it beat G."""
    steps = sorted({r["step"] for r in rows})
    first = min(r["ema_kimg"] for r in rows)
    names = sorted({r["generator"] for r in rows}, key=lambda n: _half_life(n, first))
    at = {(r["run"], r["step"], r["generator"]): r[key] for r in rows if key in r}
    runs = sorted({r["run"] for r in rows})
    primary = "/".join(f"{k:g}" for k in sorted({r["ema_kimg"] for r in rows}))

    def label(name: str) -> str:
        if name == "G":
            return "G"
        if name == "G_ema":
            return f"G_ema, {primary} kimg (the run's)"
        return f"G_ema, {name.split(':')[1]} kimg"

    lines = [
        f"| generator | {' | '.join(f'{s:,}' for s in steps)} | beats G |",
        "|" + " --- |" * (len(steps) + 2),
    ]
    for name in names:
        cells, wins, total = [], 0, 0
        for s in steps:
            vals = [at[(r, s, name)] for r in runs if (r, s, name) in at]
            cells.append(f"{statistics.fmean(vals):.1f}" if vals else "")
            for r in runs:
                if name != "G" and (r, s, name) in at and (r, s, "G") in at:
                    total += 1
                    wins += at[(r, s, name)] < at[(r, s, "G")]
        beats = f"{wins} of {total}" if name != "G" else ""
        lines.append(f"| {label(name)} | {' | '.join(cells)} | {beats} |")
    return "\n".join(lines)


def select_step(
    scores: dict, every: int, gammas: Sequence[str] = ("0.3", "0.5", "0.7")
) -> tuple[int, dict[str, str], str]:
    """(step, generator per gamma, markdown table) from a `scripts/score_runs.py` results file (scripts/export_pretrained.py --select).

    At each step (a multiple of `every` that all three runs were scored at) each run offers
    the better of G and G_ema on its own held-out score. A step is eligible when every run's
    generator beats the shipped generator of its gamma (the file's "reference", scored at the
    shipped size) on classifier Frechet distance and does not cover fewer classes; of the
    eligible steps the one with the lowest held-out score, averaged over the three, is
    chosen. SystemExit, with the table, when no step is eligible yet."""
    rows, reference = scores["rows"], scores.get("reference", {})
    if not reference:
        raise SystemExit("the results file has no shipped generators to beat: run score_runs.py")
    size = int(next(iter(reference)).rsplit("@", 1)[1])
    ref = {f"{r['gamma']:g}": r for r in reference.values()}

    def at_size(row: dict, key: str) -> float:
        return row[key] if row["resolution"] == size else row[f"{key}_at{size}"]

    offered: dict[tuple[str, int], dict] = {}  # (gamma, step) -> the better of G and G_ema
    for row in rows:
        if row["generator"] not in ("G", "G_ema") or row["step"] % every:
            continue
        if row["resolution"] != size and f"classifier_fd_at{size}" not in row:
            continue
        key = (f"{row['gamma']:g}", row["step"])
        if key not in offered or row["heldout_fd"] < offered[key]["heldout_fd"]:
            offered[key] = row
    steps = sorted(s for _, s in offered if all((g, s) in offered for g in gammas))
    steps = sorted(set(steps))

    def beats(row: dict, gamma: str) -> bool:
        r = ref[gamma]
        fd, cov = at_size(row, "classifier_fd"), at_size(row, "coverage")
        return fd < r["classifier_fd"] and cov >= r["coverage"]

    eligible = [s for s in steps if all(beats(offered[(g, s)], g) for g in gammas)]
    mean = {s: statistics.fmean(offered[(g, s)]["heldout_fd"] for g in gammas) for s in steps}
    best = min(eligible, key=lambda s: mean[s]) if eligible else None
    head = " | ".join(f"gamma {g}" for g in gammas)
    lines = [
        f"| step | {head} | mean held-out score | all beat the shipped ones |",
        "|" + " --- |" * (len(gammas) + 3),
        "| shipped | "
        + " | ".join(
            f"FD {ref[g]['classifier_fd']:.1f}, coverage {ref[g]['coverage']:.2f}" for g in gammas
        )
        + " | | |",
    ]
    for s in steps:
        cells = []
        for g in gammas:
            row = offered[(g, s)]
            fd, cov = at_size(row, "classifier_fd"), at_size(row, "coverage")
            mark = "" if beats(row, g) else " (no)"
            cells.append(
                f"{row['generator']} {row['heldout_fd']:.1f}: FD {fd:.1f}, coverage {cov:.2f}{mark}"
            )
        shipped = " **(shipped)**" if s == best else ""
        lines.append(
            f"| {s:,}{shipped} | {' | '.join(cells)} | {mean[s]:.1f} | {'yes' if s in eligible else 'no'} |"
        )
    table = "\n".join(lines)
    if best is None:
        raise SystemExit(f"no step yet where all three beat the shipped generators:\n\n{table}")
    return best, {g: offered[(g, best)]["generator"] for g in gammas}, table

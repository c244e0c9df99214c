"""The docs' tables that are copies of a results file, regenerated from that file.

A table lives in README.md or a docs/*.md page between two marker comments,

    <!-- table:NAME -->
    | ... the table ... |
    <!-- /table:NAME -->

and TABLES below says which JSON file NAME is made from and how. The formatting is that of
the script that wrote the JSON (each table names it), so a table here reads as that script's
own Markdown output does.

    python -m scripts.docs_tables            # rewrite every marked table from its JSON
    python -m scripts.docs_tables --check    # exit 1, naming each table that differs

The standard library and began_core's report formatting (no torch): it reads JSON and
Markdown, never a model (tests/test_docs.py runs the check in a fraction of a second).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from began_core.evaluation import report
from bench import tables

ROOT = Path(__file__).resolve().parents[1]

# Each marker is a line of its own (a marker quoted in a sentence is not one).
MARKER = re.compile(
    r"^(?P<open><!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)"
    r"^(?P<close><!-- /table:(?P=name) -->)$",
    re.S | re.M,
)
OPENING = re.compile(r"^<!-- table:([\w.-]+) -->$", re.M)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _row_tight(cells: list[str]) -> str:
    """A row whose empty cells are written `| |`, as the hand-written tables have them."""
    return "|" + "".join(f" {c} |" if c else " |" for c in cells)


def _rule(columns: int) -> str:
    return "|" + " --- |" * columns


# bench/cpu_options.py: what each CPU option gives, one table per configuration.
def cpu_options_table(res: int, n: int) -> Callable[[dict], str]:
    def table(result: dict) -> str:
        (config,) = [c for c in result["configs"] if (c["res"], c["n"]) == (res, n)]
        return tables.cpu_options_table(config)

    return table


# scripts/score_runs.py --table: G against G_ema, mean over the gamma runs (the same
# report.ema_table that script prints).
def ema_table(key: str) -> Callable[[dict], str]:
    return lambda result: report.ema_table(result["rows"], key)


# scripts/small_data_compare.py's results: the summary of each run, with and without
# augmentation (its full table is docs/small-data.md).
SMALL_DATA_RUNS = {
    "base": "no augmentation",
    "aug-p0.5": "translation + cutout, p 0.5",
    "aug-auto": "translation + cutout, p auto",
}
SMALL_DATA_AT = (10_000, 15_000)  # the steps whose FD the table shows
SMALL_DATA_EARLY = 5_000  # "best FD before" this step: what stopping early would have kept


def small_data_table(result: dict) -> str:
    runs = {name: {int(step): v for step, v in result[name].items()} for name in SMALL_DATA_RUNS}
    last_step = SMALL_DATA_AT[-1]

    def best(steps: dict, before: float = float("inf")) -> tuple[float, int]:
        return min((v["classifier_fd"], s) for s, v in steps.items() if s < before)

    def at(steps: dict, step: int) -> str:
        if step in steps:
            return f"{steps[step]['classifier_fd']:.1f}"
        end = max(steps)
        earlier = [s for s in SMALL_DATA_AT if s < step]
        if not earlier or max(earlier) in steps:  # stopped between the last step shown and this
            return f"({steps[end]['classifier_fd']:.1f} at {end:,})"
        return "not run"

    # The lowest best FD and the lowest FD at the last step are the comparison the text makes.
    lowest_best = min(best(s)[0] for s in runs.values())
    lowest_last = min(s[last_step]["classifier_fd"] for s in runs.values() if last_step in s)

    def bold(text: str, value: float, lowest: float) -> str:
        return f"**{text}**" if value == lowest else text

    lines = [
        _row_tight(
            [
                "",
                f"best FD before step {SMALL_DATA_EARLY:,}",
                "best FD",
                *(f"FD at step {s:,}" for s in SMALL_DATA_AT),
                f"k_t at {last_step:,}",
                f"L(x_held-out) / L(x_train) at {last_step:,}",
            ]
        ),
        _rule(7),
    ]
    for name, label in SMALL_DATA_RUNS.items():
        steps = runs[name]
        early_fd, early_step = best(steps, SMALL_DATA_EARLY)
        best_fd, best_step = best(steps)
        cells = [
            label,
            f"{early_fd:.1f} (step {early_step:,})",
            f"{bold(f'{best_fd:.1f}', best_fd, lowest_best)} (step {best_step:,})",
        ]
        for s in SMALL_DATA_AT:
            text = at(steps, s)
            cells.append(
                bold(text, steps[s]["classifier_fd"], lowest_last)
                if s == last_step and s in steps
                else text
            )
        end = steps.get(last_step)
        cells += [f"{end['k_t']:.3f}", f"{end['heldout_ratio']:.2f}"] if end else ["", ""]
        lines.append(_row_tight(cells))
    return "\n".join(lines)


# bench/dashboard_memory.py: one column per measured label (before the fix, after it, ...).
def dashboard_table(result: dict) -> str:
    labels = list(result)
    rows: list[tuple[str, Callable[[dict], str]]] = [
        (
            "when, machine",
            lambda e: f"{e['date']}, {e['machine']['cpu']} {e['machine']['cores']} cores",
        ),
        ("live run watched (s)", lambda e: f"{e['live']['watched_s']}"),
        (
            "server RSS growth while watching (MB; target < 100)",
            lambda e: f"{e['live']['rss_growth_mb']}",
        ),
        (
            "live refresh, server CPU (s; target well under 0.5)",
            lambda e: f"{e['live']['refresh_cpu_s']:g}",
        ),
        (
            "page load, server CPU, median (s)",
            lambda e: f"{e['live']['page_load_cpu_s']['median_later']:g}",
        ),
        (
            "Runs & compare, 100 runs: interaction, server CPU (s; target < 1)",
            lambda e: f"{e['compare']['interaction_cpu_s_median']:g}",
        ),
    ]
    lines = [_row(["measured", *labels]), _rule(len(labels) + 1)]
    for name, cell in rows:
        lines.append(_row([name, *(cell(result[label]) for label in labels)]))
    return "\n".join(lines)


@dataclass(frozen=True)
class Table:
    source: str  # the JSON file, relative to the repository root
    make: Callable[[dict], str]


TABLES: dict[str, Table] = {
    "cpu-profile-torch-elu": Table(
        "bench/results/cpu-profile-torch-elu.json", tables.profile_table
    ),
    "cpu-profile": Table("bench/results/cpu-profile.json", tables.profile_table),
    "cpu-options-64": Table("bench/results/cpu-options.json", cpu_options_table(64, 32)),
    "cpu-options-32": Table("bench/results/cpu-options.json", cpu_options_table(32, 16)),
    "cpu-grid": Table("bench/results/cpu.json", tables.grid_table),
    "cuda-grid": Table("bench/results/cuda.json", tables.grid_table),
    "cuda-graphed": Table(
        "bench/results/cuda.json",
        lambda r: "\n\n".join([tables.graphed_table(r), *tables.target_lines(r)]),
    ),
    "ema-32-heldout": Table("docs/scores-32.json", ema_table("heldout_fd")),
    "ema-32-evaluate": Table("docs/scores-32.json", ema_table("classifier_fd")),
    "small-data": Table("docs/small-data.json", small_data_table),
    "dashboard-memory": Table("bench/results/dashboard-memory.json", dashboard_table),
    "start-up": Table("bench/results/start-up.json", tables.start_up_table),
    "select-64": Table("docs/scores-64.json", lambda r: report.select_step(r, 5000)[2]),
}


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(name: str, root: Path) -> str:
    table = TABLES[name]
    data = json.loads((root / table.source).read_text(encoding="utf-8"))
    return table.make(data)


def update(text: str, root: Path, problems: list[str], where: str) -> str:
    """`text` with every marked table regenerated; unknown names and unclosed markers go to
    `problems`."""
    closed = {m.group("name") for m in MARKER.finditer(text)}
    for name in OPENING.findall(text):
        if name not in closed:
            problems.append(f"{where}: <!-- table:{name} --> has no <!-- /table:{name} -->")

    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in TABLES:
            problems.append(f"{where}: no table named {name!r} (known: {', '.join(TABLES)})")
            return m.group(0)
        return m.group("open") + render(name, root) + "\n" + m.group("close")

    return MARKER.sub(fill, text)


def run(root: Path, check: bool) -> tuple[list[str], list[str]]:
    """(tables that differ from their JSON, other problems); rewrites the docs unless `check`."""
    differ: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()
    for path in documents(root):
        if not path.is_file():
            continue
        where = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        new = update(text, root, problems, where)
        old_tables = {m.group("name"): m.group("body") for m in MARKER.finditer(text)}
        new_tables = {m.group("name"): m.group("body") for m in MARKER.finditer(new)}
        seen |= set(old_tables)
        for name, body in old_tables.items():
            if new_tables.get(name) != body:
                differ.append(f"{where}: table {name} differs from {TABLES[name].source}")
        if new != text and not check:
            path.write_text(new, encoding="utf-8")
    for name in TABLES.keys() - seen:
        problems.append(f"table {name} ({TABLES[name].source}) is in no document")
    return differ, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    differ, problems = run(args.root, args.check)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if args.check:
        for line in differ:
            print(f"{line}: run python -m scripts.docs_tables", file=sys.stderr)
        return 1 if differ or problems else 0
    for line in differ:
        print(f"rewrote {line.replace(' differs from ', ' from ')}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

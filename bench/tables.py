"""The Markdown tables of the benches' results, from their JSON alone (no torch): each bench
prints them, and scripts/docs_tables.py regenerates the docs' copies with the same functions."""

from __future__ import annotations

# bench/profile_cpu.py's buckets, in the order its table lists them.
PROFILE_BUCKETS = (
    "convolution",
    "matrix product",
    "ELU",
    "up-sampling",
    "elementwise and reductions",
    "casts and copies",
    "allocation",
    "Adam",
    "zero_grad",
    "outside operators",
)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _rule(columns: int) -> str:
    return "|" + " --- |" * columns


def profile_table(result: dict) -> str:
    """bench/profile_cpu.py: each bucket's share of a step's wall time, per configuration."""
    rows = result["rows"]
    lines = [
        _row(["bucket", *(f"{r['res']}x{r['res']} n={r['n']}" for r in rows)]),
        _rule(len(rows) + 1),
        _row(["step", *(f"{r['step_ms']:.1f} ms" for r in rows)]),
    ]
    for b in PROFILE_BUCKETS:
        cells = [f"{100 * r['ms'][b] / r['step_ms']:.0f}% ({r['ms'][b]:.1f})" for r in rows]
        lines.append(_row([b, *cells]))
    return "\n".join(lines)


def cpu_options_table(config: dict) -> str:
    """bench/cpu_options.py: what each variant gives at one configuration of its results."""
    res, n = config["res"], config["n"]
    lines = [
        f"{res}x{res}, n={n} ({config['gflop_per_step']:.1f} GFLOP a step); "
        f"`train`'s default here: {config['default']}.",
        "",
        "| variant | ms/step | img/s | vs reference | of bf16 conv ceiling | first 3 steps |",
        _rule(6),
    ]
    for r in config["rows"]:
        first = f"{r['first_steps_s']:.1f} s" if r["first_steps_s"] is not None else ""
        lines.append(
            f"| {r['variant']} | {r['step_ms']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['speedup']:.2f}x | {100 * r['of_bf16_conv_ceiling']:.0f}% | {first} |"
        )
    return "\n".join(lines)


def grid_table(result: dict) -> str:
    """bench/bench.py: the whole grid, the reference against `train`'s default and the fast path."""
    lines = [
        "| res | n | batch | GFLOP/step | reference img/s | began_core img/s | speed-up "
        "| of ceilings (mm / conv) | fast img/s | speed-up | of ceilings (mm / conv) |",
        _rule(11),
    ]

    def share(v: dict) -> str:
        return f"{100 * v['of_ceiling']:.0f}% / {100 * v['of_conv_ceiling']:.0f}%"

    for r in result["rows"]:
        head = f"| {r['resolution']} | {r['n']} | {r['batch']} | {r['gflop_per_step']:.1f} |"
        if "skipped" in r:
            lines.append(f"{head} skipped: {r['skipped']} |" + " |" * 6)
            continue
        b, f, ref = r["began_core"], r["fast"], r["reference"]
        lines.append(
            f"{head} {ref['images_per_s']:.1f} | {b['images_per_s']:.1f} | {r['speedup']:.2f}x | "
            f"{share(b)} | {f['images_per_s']:.1f} | {r['speedup_fast']:.2f}x | {share(f)} |"
        )
    return "\n".join(lines)


def graphed_table(result: dict) -> str:
    """bench/bench.py on CUDA: the graphed step and torch.compile's reduce-overhead, each as a
    speed-up over the reference of its row."""
    lines = [
        "| res | n | batch | graphed img/s | speed-up | of ceilings (mm / conv) "
        "| reduce-overhead img/s | speed-up |",
        _rule(8),
    ]

    def cell(v: dict, share: bool = True) -> str:
        if "images_per_s" not in v:
            what = "failed" if "error" in v else "not run"
            return f"{what} |" + (" |" if share else "") + " |"
        s = f"{v['images_per_s']:.1f} | {v['speedup']:.2f}x |"
        if share:
            s += f" {100 * v['of_ceiling']:.0f}% / {100 * v['of_conv_ceiling']:.0f}% |"
        return s

    for r in result["rows"]:
        if "graphed" in r or "reduce-overhead" in r:
            lines.append(
                f"| {r['resolution']} | {r['n']} | {r['batch']} | "
                f"{cell(r.get('graphed', {}))} {cell(r.get('reduce-overhead', {}), False)}"
            )
    return "\n".join(lines)


def target_lines(result: dict) -> list[str]:
    """bench/bench.py on CUDA: the issue's targets for the graphed step, each met or missed."""
    out = []
    for t in result.get("targets", []):
        res, n, batch = t["config"]
        got = "not measured" if t["graphed"] is None else f"{t['graphed']:.2f}"
        out.append(
            f"Target {res}x{res}, n={n}, batch {batch}: graphed {t['measure']} {got} "
            f"against {t['target']:g}: {'met' if t['met'] else 'missed'}."
        )
    return out


def start_up_table(result: dict) -> str:
    """bench/start_up.py: each run's lines with their times, and its longest silence."""
    lines = [
        f"`train` from its start to its first step on {result['images']:,} JPEGs "
        f"({result['cpu'] or 'unknown CPU'}, {result['cpus']} cores, load average "
        f"{result['load_average']:g} at the start), {result['date']}.",
        "",
    ]
    for name, run in result["runs"].items():
        silence = run["silence"]
        lines += [
            f"{name}: {run['total_s']:.1f} s in all; the longest stretch with nothing new on "
            f'screen {silence["seconds"]:.1f} s, before "{_short(silence["before"], 40)}".',
            "",
            "| s | line |",
            "| --- | --- |",
        ]
        for line in run["lines"]:
            at = f"{line['at']:.1f}" + (
                f" to {line['last']:.1f}" if line["last"] > line["at"] else ""
            )
            lines.append(f"| {at} | {_short(line['text'])} |")
        lines.append("")
    return "\n".join(lines)


def _short(text: str, width: int = 80) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"

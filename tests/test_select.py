"""scripts/export_pretrained.py --select: the step to ship, from a score_runs.py results file."""

from pathlib import Path

import pytest

from scripts import export_pretrained, score_runs

ROOT = Path(__file__).resolve().parents[1]

REFERENCE = {  # the shipped 32x32 generators, scored at 32
    f"fluent-faces-32-gamma{g}@32": {"gamma": g, "step": 2750, "classifier_fd": fd, "coverage": 0.5}
    for g, fd in ((0.3, 35.0), (0.5, 27.0), (0.7, 25.0))
}


def row(gamma, step, generator, heldout, fd32, coverage32=0.6):
    return {
        "run": f"gamma{gamma}",
        "gamma": gamma,
        "resolution": 64,
        "ema_kimg": 1.0,
        "step": step,
        "generator": generator,
        "heldout_fd": heldout,
        "classifier_fd": fd32 + 3,
        "coverage": coverage32,
        "classifier_fd_at32": fd32,
        "coverage_at32": coverage32,
    }


def test_select_takes_the_best_held_out_step_among_those_where_all_three_win():
    rows = []
    for g, base in ((0.3, 35.0), (0.5, 27.0), (0.7, 25.0)):
        rows += [
            # step 1000: gamma 0.3 loses to the shipped one, though held-out scores are best
            row(g, 1000, "G", 10, base + (1 if g == 0.3 else -1)),
            row(g, 1000, "G_ema", 11, base + 5),
            # step 2000: all win, G_ema better held-out for every gamma
            row(g, 2000, "G", 30, base - 2),
            row(g, 2000, "G_ema", 20, base - 3),
            # step 3000: all win, but a worse held-out score
            row(g, 3000, "G", 25, base - 4),
            row(g, 3000, "G_ema", 26, base - 4),
            # a swept average is measured, never shipped by the rule
            row(g, 2000, "G_ema:5", 1, base - 9),
        ]
    step, generators, table = export_pretrained.select({"rows": rows, "reference": REFERENCE}, 1000)
    assert step == 2000 and generators == dict.fromkeys(("0.3", "0.5", "0.7"), "G_ema")
    assert "| 2,000 **(shipped)** |" in table and "(no)" in table


def test_select_refuses_fewer_classes_and_says_when_no_step_wins():
    rows = [row(g, 1000, "G", 10, 1.0, coverage32=0.4) for g in (0.3, 0.5, 0.7)]
    with pytest.raises(SystemExit, match="no step yet where all three beat"):
        export_pretrained.select({"rows": rows, "reference": REFERENCE}, 1000)


def test_ema_table_counts_where_each_half_life_beats_G():
    rows = [row(0.5, 1000, "G", 10, 20), row(0.5, 1000, "G_ema", 9, 20)]
    rows += [row(0.5, 1000, "G_ema:5", 12, 20), row(0.3, 1000, "G", 8, 20)]
    rows += [row(0.3, 1000, "G_ema", 7, 20)]
    table = score_runs.ema_table(rows)
    assert "| G | 9.0 |  |" in table
    assert "| G_ema, 1 kimg (the run's) | 8.0 | 2 of 2 |" in table
    assert "| G_ema, 5 kimg | 12.0 | 0 of 1 |" in table

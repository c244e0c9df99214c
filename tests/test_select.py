"""scripts/export_pretrained.py --select: the step to ship, from a score_runs.py results file."""

from pathlib import Path

import pytest

from began_core.runs.run_dir import RunDir
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


def card_config(hardware: str, **train) -> dict:
    return {
        "meta": {"command": "python -m began_core train --preset faces-64", "hardware": hardware},
        "train": {"lr": 1e-4, "eta": 2, "lambda_k": 0.01, "ema_kimg": 1.0, **train},
        "data": {"heldout": 0.0},
        "model": {"resolution": 64},
    }


@pytest.mark.parametrize(
    ("hardware", "says", "never"),
    [
        ("x86_64 CPU, 1 threads", ("Trained on a CPU", "steps on a CPU"), ("GPU, the three",)),
        ("NVIDIA H200", ("Trained on NVIDIA H200",), ("Trained on a CPU", "on a CPU,")),
    ],
)
def test_the_card_says_where_the_run_was_trained(tmp_path, hardware, says, never):
    """The device window exports GPU runs with this script: their cards must not claim a CPU."""
    run = RunDir(tmp_path / "run")
    (run.checkpoints_dir / "step_0001000").mkdir(parents=True)
    text = export_pretrained.note(run, card_config(hardware), 1000, selected=False)
    assert all(s in text for s in says) and not any(s in text for s in never), text


def test_the_card_explains_only_the_departures_from_the_paper_preset(tmp_path):
    run = RunDir(tmp_path / "run")
    (run.checkpoints_dir / "step_0001000").mkdir(parents=True)
    faces = export_pretrained.note(run, card_config("x86_64 CPU, 1 threads"), 1000, False)
    assert "eta 2 (squared error" in faces and "lambda_k 0.01, not the paper's 0.001" in faces
    paper = export_pretrained.note(
        run, card_config("NVIDIA H200", eta=1, lambda_k=0.001), 1000, selected=False
    )
    assert "eta 2" not in paper and "lambda_k" not in paper and "Learning rate" not in paper

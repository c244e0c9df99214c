"""scripts/train_gammas.sh, the shipped generators' three runs: one per gamma with the
recipe, and a second call resumes them to a larger step count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--filters", "8", "--h-dim", "16", "--z-dim", "16", "--checkpoint-every", "2"]
SMALL += ["--sample-every", "2", "--log-every", "1", "--score-every", "0"]


def train(runs: Path, steps: int) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_gammas.sh"), str(runs), str(steps), "32", *SMALL],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        done.stdout + done.stderr + "".join(p.read_text() for p in runs.glob("*.log"))
    )


@pytest.mark.slow
def test_three_gammas_with_the_recipe_then_resumed(tmp_path):
    runs = tmp_path / "runs"
    train(runs, 2)
    for gamma in (0.3, 0.5, 0.7):
        config = json.loads((runs / f"gamma{gamma}" / "config.json").read_text())
        assert config["train"]["gamma"] == gamma and config["train"]["seed"] == 0
        assert config["model"]["resolution"] == 32 and config["data"]["heldout"] == 0.05
        assert config["train"]["augment"] == "translation,cutout"
        assert config["train"]["augment_p"] == 0.5
    train(runs, 4)
    for gamma in (0.3, 0.5, 0.7):
        assert "finished at step 4" in (runs / f"gamma{gamma}.log").read_text()
        lines = (runs / f"gamma{gamma}" / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines if '"L_x"' in line]
        assert steps == [1, 2, 3, 4]  # continued from step 2, not started again

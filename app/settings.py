"""Dashboard settings, read from the environment on every page run.

BEGAN_READ_ONLY=1        show runs and shipped checkpoints; start, stop or delete nothing,
                         and accept no paths (for a public deployment)
BEGAN_RUNS_DIR=runs      where runs live (relative to the working directory)
BEGAN_PRETRAINED_DIR     shipped checkpoints (default: pretrained/ beside app/)
BEGAN_REFRESH_S=2        seconds between refreshes of a live run
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    read_only: bool
    runs_dir: Path
    pretrained_dir: Path
    refresh_s: float


def load() -> Settings:
    try:
        refresh = max(0.5, float(os.environ.get("BEGAN_REFRESH_S", "2")))
    except ValueError:
        refresh = 2.0
    return Settings(
        read_only=os.environ.get("BEGAN_READ_ONLY", "").strip().lower() in TRUE,
        runs_dir=Path(os.environ.get("BEGAN_RUNS_DIR") or "runs"),
        pretrained_dir=Path(os.environ.get("BEGAN_PRETRAINED_DIR") or PROJECT_ROOT / "pretrained"),
        refresh_s=refresh,
    )

"""Dashboard settings, read from the environment on every page run.

BEGAN_READ_ONLY=1        show runs and shipped checkpoints; start, stop or delete nothing,
                         and accept no paths (for a public deployment)
BEGAN_RUNS_DIR=runs      where runs live (relative to the working directory)
BEGAN_PRETRAINED_DIR     shipped checkpoints (default: pretrained/ beside app/)
BEGAN_REFRESH_S=2        seconds between refreshes of a live run
BEGAN_HUB_MODELS         Hub repo ids the explorer lists beside the local checkpoints
                         (comma-separated; on a Space, SYSTEM=spaces, the README's `models:`)
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
    hub_models: tuple[str, ...] = ()


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
        hub_models=hub_models(),
    )


def hub_models() -> tuple[str, ...]:
    """BEGAN_HUB_MODELS, or on a Space (SYSTEM=spaces) the `models:` of its README, whose
    front matter is what the Space is built from (and `preload_from_hub` caches them)."""
    listed = os.environ.get("BEGAN_HUB_MODELS")
    if listed is not None:
        return tuple(m for m in listed.replace(",", " ").split() if m)
    if os.environ.get("SYSTEM") != "spaces":
        return ()
    models = front_matter(PROJECT_ROOT / "README.md").get("models") or []
    return tuple(str(m) for m in models) if isinstance(models, list) else ()


def front_matter(readme: Path) -> dict:
    """The YAML between the first two '---' lines of a README (a Space's configuration)."""
    import yaml

    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---\n"):
        return {}
    try:
        data = yaml.safe_load(text[4 : text.index("\n---", 4)])
    except (ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}

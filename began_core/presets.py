"""Named starting points for a run: `train --preset NAME`, the dashboard's defaults, the
gamma-training script. A preset is a set of `train` flags (flags.OPTIONS names); flags given
beside it win, and the run's config.json records which preset it started from (meta.preset).

The classroom's 2-D BEGAN is another model with its own settings; its preset lives here too,
so that its page and its tests start from the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError


@dataclass(frozen=True)
class Preset:
    summary: str  # one line for `--help` and the dashboard
    flags: Mapping[str, Any] = field(default_factory=dict)


# The recipe measured on the built-in faces (docs/results.md: Small data: measured, and the
# shipped generators): squared errors with a gain to match, translation + cutout at p 0.5 on what D
# sees, 5 % of the images held out, G scored on them and the best checkpoint kept.
_FACES = {
    "data": "fluent-faces",
    "filters": 32,
    "eta": 2,
    "lambda_k": 0.01,
    "lr": 1e-4,
    "augment": "translation,cutout",
    "augment_p": 0.5,
    "heldout": 0.05,
    "score_every": 1000,
}

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "the paper's setup at 64x64: gamma 0.5, lambda_k 0.001, eta 1, Adam at 1e-4 (betas 0.5, "
        "0.999, as its implementations use), "
        "batch 16, n = Nh = Nz = 64",
        {
            "resolution": 64,
            "filters": 64,
            "h_dim": 64,
            "z_dim": 64,
            "gamma": 0.5,
            "lambda_k": 0.001,
            "k0": 0.0,
            "eta": 1,
            "lr": 1e-4,
            "beta1": 0.5,
            "beta2": 0.999,
            "batch_size": 16,
        },
    ),
    "faces-32": Preset(
        "the recipe measured on the built-in faces, at 32x32: eta 2, lambda_k 0.01, n 32, "
        "translation + cutout at p 0.5, 5 % held out and scored every 1,000 steps",
        {**_FACES, "resolution": 32},
    ),
    "faces-64": Preset(
        "the same recipe at 64x64 (the shipped 64x64 generators' runs)",
        {**_FACES, "resolution": 64},
    ),
}


def preset_flags(name: str) -> dict[str, Any]:
    """The flags of preset `name`; a ConfigError naming the presets for any other name."""
    try:
        return dict(PRESETS[name].flags)
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}.") from None


# The classroom (classroom/began2d.py): the 5x5 grid, learning with a gain large enough to
# see k_t move within seconds; "speed" is steps per frame and "view" what D auto-encodes.
# Its flags are the page's settings (app/views/classroom.py), not `train`'s.
CLASSROOM = Preset(
    "the classroom's 2-D BEGAN on the 5x5 grid: gamma 0.5, lambda_k 0.1, Adam at 1e-3 for G and D",
    {
        "data": "grid",
        "seed": 0,
        "gamma": 0.5,
        "lambda_k": 0.1,
        "eta": 1,
        "lr_D": 1e-3,
        "lr_G": 1e-3,
        "speed": 20,
        "view": "blob",
    },
)

"""G_ema: a moving average of G's weights, kept beside G and never fed back into training.

After every step, `G_ema <- beta G_ema + (1 - beta) G`, with beta from a half-life counted in
images, as StyleGAN2-ADA keeps it: `beta = 0.5 ** (images per step / half-life)`. With a
ramp-up the half-life is at most `rampup` times the images seen so far, so that early in
training the average follows G instead of remembering G's random start.

The first half-life of a run is its G_ema (`BEGAN.G_ema`, saved with G and D); further
half-lives (`ema_sweep`) are kept only to be measured against it. How checkpoints store them
and how a tool chooses among G, G_ema and the swept ones: `checkpoints/generators.py`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..config import TrainConfig, parse_half_lives
from .model import BEGAN


def beta(images_per_step: int, half_life_kimg: float, images_seen: int, rampup: float) -> float:
    """The average's weight on its past after a step that brought it to `images_seen`."""
    half_life = half_life_kimg * 1000.0
    if rampup > 0:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (images_per_step / max(half_life, 1e-8))


def half_lives(cfg: TrainConfig) -> tuple[float, ...]:
    """The half-lives a run keeps, in thousands of images: its G_ema's first, then the sweep's."""
    if cfg.ema_kimg <= 0:
        return ()
    return tuple(dict.fromkeys((float(cfg.ema_kimg), *parse_half_lives(cfg.ema_sweep))))


def sweep_name(kimg: float) -> str:
    """The name a swept average goes by: "G_ema:KIMG"."""
    return f"G_ema:{kimg:g}"


def frozen_copy(G: nn.Module) -> nn.Module:
    """A copy of G that no optimizer updates."""
    return copy.deepcopy(G).requires_grad_(False)


class Averages:
    """Every average a run keeps of `model.G`, by half-life; the first is `model.G_ema`, which
    this adds (initialised from G) to a model that has none."""

    def __init__(self, model: BEGAN, cfg: TrainConfig) -> None:
        self.model, self.rampup, self.batch = model, cfg.ema_rampup, cfg.batch_size
        kimgs = half_lives(cfg)
        if not kimgs:
            raise ValueError("no G_ema asked for: ema_kimg is 0")
        G_ema = model.G_ema if model.G_ema is not None else model.add_G_ema()
        self.nets: dict[float, nn.Module] = {kimgs[0]: G_ema}
        for kimg in kimgs[1:]:
            self.nets[kimg] = frozen_copy(model.G)

    @property
    def sweep(self) -> dict[float, nn.Module]:
        """The averages beyond G_ema, kept for measurement."""
        return dict(list(self.nets.items())[1:])

    @torch.no_grad()
    def update(self, images_seen: int) -> None:
        """One step of every average towards the current G."""
        G = [*self.model.G.parameters(), *self.model.G.buffers()]
        for kimg, net in self.nets.items():
            b = beta(self.batch, kimg, images_seen, self.rampup)
            torch._foreach_lerp_([*net.parameters(), *net.buffers()], G, 1.0 - b)

    @torch.no_grad()
    def reset_to_G(self, which: Sequence[float] | None = None) -> None:
        """Start averages (all, or those half-lives) from G's weights as they are now."""
        for kimg in self.nets if which is None else which:
            self.nets[kimg].load_state_dict(self.model.G.state_dict())

    def sweep_state(self) -> dict[float, dict[str, torch.Tensor]]:
        """The swept averages' weights, by half-life."""
        return {kimg: net.state_dict() for kimg, net in self.sweep.items()}

    def load_sweep_state(self, saved: dict[float, dict[str, torch.Tensor]]) -> list[float]:
        """Restore the swept averages `saved` holds; returns the half-lives it lacked, which
        start from G instead."""
        missing = []
        for kimg, net in self.sweep.items():
            if kimg in saved:
                net.load_state_dict(saved[kimg])
            else:
                missing.append(kimg)
        self.reset_to_G(missing)
        return missing

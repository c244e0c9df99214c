"""G_ema: a moving average of G's weights, kept beside G and never fed back into training.

After every step, `G_ema <- beta G_ema + (1 - beta) G`, with beta from a half-life counted in
images, as StyleGAN2-ADA keeps it: `beta = 0.5 ** (images per step / half-life)`. With a
ramp-up the half-life is at most `rampup` times the images seen so far, so that early in
training the average follows G instead of remembering G's random start.

The first half-life of a run is its G_ema, saved with G and D in `model.safetensors` (keys
`G_ema.*`); further half-lives (`ema_sweep`) are kept only to be measured against it, in
`ema_sweep.safetensors` beside. Which generator to use is named "G", "G_ema" or, for a
swept average, "G_ema:KIMG" (`select`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import TrainConfig, parse_half_lives
from .faults import point
from .model import BEGAN

SWEEP_FILE = "ema_sweep.safetensors"
GENERATORS = ("G", "G_ema")  # and "G_ema:KIMG" for a swept average


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
    return f"G_ema:{kimg:g}"


class Averages:
    """Every average a run keeps of `model.G`, by half-life; the first is `model.G_ema`, which
    this adds (initialised from G) to a model that has none."""

    def __init__(self, model: BEGAN, cfg: TrainConfig) -> None:
        self.model, self.rampup, self.batch = model, cfg.ema_rampup, cfg.batch_size
        kimgs = half_lives(cfg)
        if not kimgs:
            raise ValueError("no G_ema asked for: ema_kimg is 0")
        if model.G_ema is None:
            model.add_G_ema()
        self.nets: dict[float, nn.Module] = {kimgs[0]: model.G_ema}
        for kimg in kimgs[1:]:
            self.nets[kimg] = _frozen_copy(model.G)

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

    def save_sweep(self, directory: Path) -> None:
        """Write the swept averages (float32, exact) into a checkpoint folder; none, nothing."""
        if not self.sweep:
            return
        state = {
            f"{kimg:g}/{k}": v.detach().cpu().contiguous()
            for kimg, net in self.sweep.items()
            for k, v in net.state_dict().items()
        }
        save_file(state, str(directory / SWEEP_FILE), metadata={"format": "pt"})
        point(f"write {SWEEP_FILE}")

    def load_sweep(self, directory: Path) -> list[float]:
        """Restore the swept averages a checkpoint holds; returns the half-lives it lacked
        (started from G instead)."""
        saved = load_sweep(directory)
        missing = []
        for kimg, net in self.sweep.items():
            if kimg in saved:
                net.load_state_dict(saved[kimg])
            else:
                missing.append(kimg)
        self.reset_to_G(missing)
        return missing


def load_sweep(directory: str | os.PathLike) -> dict[float, dict[str, torch.Tensor]]:
    """The swept averages of a checkpoint folder, by half-life (empty when it kept none)."""
    path = Path(directory) / SWEEP_FILE
    if not path.is_file():
        return {}
    out: dict[float, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        kimg, name = key.split("/", 1)
        out.setdefault(float(kimg), {})[name] = value
    return out


def available(model: BEGAN, checkpoint: str | os.PathLike | None = None) -> list[str]:
    """The generators a loaded checkpoint offers, by the names `select` takes."""
    names = ["G"] + (["G_ema"] if model.G_ema is not None else [])
    if checkpoint is not None and Path(checkpoint).is_dir():
        names += [sweep_name(k) for k in sorted(load_sweep(checkpoint))]
    return names


def select(model: BEGAN, which: str, checkpoint: str | os.PathLike | None = None) -> BEGAN:
    """`model` generating with `which`: "G", "G_ema", "G_ema:KIMG" (a swept average of the
    checkpoint folder), or "auto" (the one the checkpoint names as its generator, else G).
    The result shares D and, for G and G_ema, the weights with `model`."""
    from .checkpoint_checks import CheckpointError

    if which == "auto":
        which = model.recommended
    if which == "G":
        return model
    if which == "G_ema":
        if model.G_ema is None:
            raise CheckpointError(
                "this checkpoint has no G_ema (train with --ema-kimg to keep one); use --generator G."
            )
        return model.using(model.G_ema, "G_ema")
    if which.startswith("G_ema:"):
        try:
            kimg = float(which.split(":", 1)[1])
        except ValueError:
            kimg = None
        saved = load_sweep(checkpoint) if checkpoint is not None else {}
        if kimg not in saved:
            offered = ", ".join(available(model, checkpoint))
            raise CheckpointError(f"no generator {which!r} in this checkpoint; it has {offered}.")
        net = _frozen_copy(model.G)
        net.load_state_dict(saved[kimg])
        return model.using(net, sweep_name(kimg))
    raise CheckpointError(
        f"unknown generator {which!r}: choose G, G_ema, G_ema:KIMG (a swept average) or auto."
    )


def _frozen_copy(G: nn.Module) -> nn.Module:
    return copy.deepcopy(G).requires_grad_(False)


def offered(folder: str | os.PathLike) -> tuple[str, ...]:
    """The generators a local checkpoint folder holds, the one it names for use first, read
    from its safetensors header and training.json without loading a tensor."""
    from .checkpoint_checks import CheckpointError, read_header
    from .hub import WEIGHTS, read_training

    try:
        header, _ = read_header(Path(folder) / WEIGHTS)
    except (OSError, CheckpointError):
        return ("G",)
    if not any(k.startswith("G_ema.") for k in header):
        return ("G",)
    named = (read_training(folder) or {}).get("generator")
    return ("G_ema", "G") if named == "G_ema" else ("G", "G_ema")

"""Which generator of a checkpoint to use: G, its moving average G_ema (`nn/ema.py`), or an
average a run kept beside G_ema to measure it (`train --ema-sweep`).

G_ema lives in `model.safetensors` (keys `G_ema.*`) with G and D; the swept averages in
`ema_sweep.safetensors` beside it. A tool names the generator "G", "G_ema", "G_ema:KIMG" or
"auto" (the one the checkpoint names in its training.json, else G).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..faults import point
from ..nn.ema import Averages, frozen_copy, sweep_name
from ..nn.model import BEGAN
from .checkpoint_checks import CheckpointError, read_header
from .hub import WEIGHTS, read_training
from .weights_file import save_weights

SWEEP_FILE = "ema_sweep.safetensors"


def save_sweep(averages: Averages, directory: Path) -> None:
    """Write the swept averages (float32, exact) into a checkpoint folder; none, nothing."""
    state = {
        f"{kimg:g}/{k}": v.detach().cpu().contiguous()
        for kimg, weights in averages.sweep_state().items()
        for k, v in weights.items()
    }
    if not state:
        return
    save_weights(state, directory / SWEEP_FILE)
    point(f"write {SWEEP_FILE}")


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
        net = frozen_copy(model.G)
        net.load_state_dict(saved[kimg])
        return model.using(net, sweep_name(kimg))
    raise CheckpointError(
        f"unknown generator {which!r}: choose G, G_ema, G_ema:KIMG (a swept average) or auto."
    )


def offered(folder: str | os.PathLike) -> tuple[str, ...]:
    """The generators a local checkpoint folder holds, the one it names for use first, read
    from its safetensors header and training.json without loading a tensor."""
    try:
        header, _ = read_header(Path(folder) / WEIGHTS)
    except (OSError, CheckpointError):
        return ("G",)
    if not any(k.startswith("G_ema.") for k in header):
        return ("G",)
    named = (read_training(folder) or {}).get("generator")
    return ("G_ema", "G") if named == "G_ema" else ("G", "G_ema")

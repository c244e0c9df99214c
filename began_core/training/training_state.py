"""What a checkpoint needs beyond the weights for a resume to continue bit-for-bit.

`training_state.pt` beside `model.safetensors` holds both Adam states, k_t, the learning rate,
the plateau rule, the step, the wall time and the RNG states. It holds tensors, numbers and
lists only, so it loads with `torch.load(..., weights_only=True)`: no pickled code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..faults import point

STATE_FILE = "training_state.pt"


def save(path: Path, *, z_states: list[torch.Tensor], **values: Any) -> None:
    """`z_states`: every rank's noise-generator state, in rank order."""
    torch.save(
        {
            **values,
            "rng_torch": torch.get_rng_state(),
            "rng_z": torch.stack([s.cpu() for s in z_states]),
            "rng_python": _lists(random.getstate()),
        },
        path / STATE_FILE,
    )
    point(f"write {STATE_FILE}")


def load(path: Path) -> dict[str, Any]:
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    if state["rng_z"].dim() == 1:  # one process, saved before distributed training existed
        state["rng_z"] = state["rng_z"][None]
    return state


def problem(path: Path) -> str | None:
    """None if the checkpoint folder `path` can be resumed from, else what is wrong with it:
    weights whose safetensors header or length is broken, a training state that will not load."""
    from safetensors import safe_open

    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                f.get_slice(key)
    except Exception as e:
        return f"model.safetensors unreadable: {e}"
    try:
        load(path)
    except Exception as e:
        return f"{STATE_FILE} unreadable: {type(e).__name__}: {e}"
    return None


def restore_rng(state: dict[str, Any], z_gen: torch.Generator, rank: int, world: int) -> str | None:
    """Restore the RNG states. None when the noise draws continue exactly; else why each rank's
    noise generator was re-seeded from (seed, step, rank) instead (still deterministic): the
    number of processes changed, or the run moved between a CPU and a GPU, whose generators
    keep states of different kinds (a CUDA run resumed on a CPU, or the other way round)."""
    torch.set_rng_state(state["rng_torch"])
    random.setstate(_tuple(state["rng_python"]))
    saved, mine = state["rng_z"], z_gen.get_state()
    if saved.shape[0] != world:
        why = f"resumed with {world} process(es) where {saved.shape[0]} saved the checkpoint"
    elif saved.shape[1] != mine.numel():
        why = (
            f"resumed on {z_gen.device.type} from a checkpoint whose noise generator was another "
            "device's"
        )
    else:
        z_gen.set_state(saved[rank].to(mine.device))
        return None
    words = (int(state.get("seed", 0)), int(state["step"]), rank)
    z_gen.manual_seed(int(np.random.SeedSequence(words).generate_state(1)[0]))
    return why


def _lists(x: Any) -> Any:
    return [_lists(v) for v in x] if isinstance(x, tuple) else x


def _tuple(x: Any) -> Any:
    return tuple(_tuple(v) for v in x) if isinstance(x, list) else x

"""What a run is checked for before it trains, and what a resume restores first: the sizes a
model folder is held to, the checkpoint to resume from and the settings an exact resume must
keep (config.opt's `frozen`), then G, D and G's averages from that checkpoint. The rest of the
training state (Adam, k_t, lr, RNG) is training_state.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..checkpoints import generators
from ..checkpoints.checkpoint_checks import check_config
from ..checkpoints.hub import CheckpointError, describe_mismatch, load
from ..config import ConfigError, RunConfig
from ..flags import FROZEN
from ..nn import ema
from ..nn.model import BEGAN
from ..runs.run_dir import RunDir
from . import training_state

MAX_BATCH = 4096  # images per step, at most: far beyond any BEGAN recipe, short of a memory blow-up


def restore_weights(
    model: BEGAN,
    averages: ema.Averages | None,
    checkpoint: Path,
    device: torch.device,
    main: bool,
) -> None:
    """G, D and the averages from a checkpoint. A run that kept no G_ema before gains one,
    started from G as it is now; one resumed without G_ema drops it."""
    loaded = load(checkpoint, device=device, expect=model.config).state_dict()
    gains = model.G_ema is not None and not any(k.startswith("G_ema.") for k in loaded)
    if model.G_ema is None:
        loaded = {k: v for k, v in loaded.items() if not k.startswith("G_ema.")}
    missing, unexpected = model.load_state_dict(loaded, strict=False)
    if unexpected or any(not k.startswith("G_ema.") for k in missing):
        raise CheckpointError(f"{checkpoint} does not fit this model: {missing or unexpected}")
    if averages is None:
        return
    if gains:
        averages.reset_to_G()
        started = list(averages.nets)
    else:
        started = averages.load_sweep_state(generators.load_sweep(checkpoint))
    if started and main:
        kimgs = ", ".join(f"{k:g}" for k in started)
        print(
            f"note: {checkpoint.name} kept no average of G at half-life {kimgs} kimg; it starts "
            "from G as it is at this step.",
            file=sys.stderr,
        )


def check_sizes(config: RunConfig, where: str) -> None:
    """The bounds a model folder is held to (checkpoint_checks), and a batch size that fits."""
    try:
        check_config(config.model, where)
    except CheckpointError as e:
        raise ConfigError(str(e).replace("not loaded", "not trained")) from None
    if config.train.batch_size > MAX_BATCH:
        raise ConfigError(
            f"{where} asks for batch_size={config.train.batch_size}, above the limit of "
            f"{MAX_BATCH}: not trained (BEGAN's batch is 16; a GPU takes a few hundred)."
        )


def check_resume(run: RunDir, config: RunConfig) -> Path:
    if not run.exists():
        raise ConfigError(f"cannot resume {run.path}: it is not a run directory (no config.json).")
    checkpoint = run.resume_checkpoint(training_state.problem)
    if checkpoint is None:
        none = (
            "all its checkpoints are damaged" if run.checkpoints() else "it has no checkpoint yet"
        )
        raise ConfigError(f"cannot resume {run.path}: {none}; start it afresh.")
    stored = run.read_config()
    check_sizes(stored, str(run.config_path))
    if stored.model != config.model:
        raise CheckpointError(
            f"cannot resume {run.path} with another model: {describe_mismatch(config.model, stored.model)}."
        )
    # What the config declares frozen (config.opt): the trajectory depends on it.
    changed = [k for k in FROZEN["train"] if getattr(stored.train, k) != getattr(config.train, k)]
    if changed or stored.data != config.data:
        what = ", ".join(changed + (["data"] if stored.data != config.data else []))
        raise ConfigError(
            f"cannot resume {run.path} with different {what}: an exact resume needs the stored "
            "values; resume without those options, or start a new run."
        )
    return checkpoint

"""The `train` command's flags, named once: which config field each sets, how a set of given
flags becomes a RunConfig (`config_from_flags`), and the way back (`train_flags`).

Below the command line, so that the model cards, the dashboard's launches and the CLI share one
mapping without any of them importing `cli`.
"""

from __future__ import annotations

import shlex
from typing import Any

from .config import RunConfig

# Flag (argparse dest) -> (section, field). A flag left unset keeps the stored/default value.
FLAGS: dict[str, tuple[str, str]] = {
    "resolution": ("model", "resolution"),
    "channels": ("model", "channels"),
    "filters": ("model", "n"),
    "h_dim": ("model", "Nh"),
    "z_dim": ("model", "Nz"),
    "convs_per_scale": ("model", "convs_per_scale"),
    "skip": ("model", "skip"),
    "vanishing_residual": ("model", "vanishing_residual"),
    "steps": ("train", "steps"),
    "batch_size": ("train", "batch_size"),
    "gamma": ("train", "gamma"),
    "lambda_k": ("train", "lambda_k"),
    "k0": ("train", "k_0"),
    "eta": ("train", "eta"),
    "lr": ("train", "lr"),
    "beta1": ("train", "beta1"),
    "beta2": ("train", "beta2"),
    "lr_window": ("train", "lr_window"),
    "lr_tolerance": ("train", "lr_tolerance"),
    "lr_min": ("train", "lr_min"),
    "carry_steps": ("train", "carry_steps"),
    "seed": ("train", "seed"),
    "log_every": ("train", "log_every"),
    "sample_every": ("train", "sample_every"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "keep_checkpoints": ("train", "keep_checkpoints"),
    "device": ("train", "device"),
    "deterministic": ("train", "deterministic"),
    "amp": ("train", "amp"),
    "channels_last": ("train", "channels_last"),
    "fused_adam": ("train", "fused_adam"),
    "compile": ("train", "compile"),
    "graph": ("train", "graph"),
    "augment": ("train", "augment"),
    "augment_p": ("train", "augment_p"),
    "heldout_every": ("train", "heldout_every"),
    "score_every": ("train", "score_every"),
    "ema_kimg": ("train", "ema_kimg"),
    "ema_rampup": ("train", "ema_rampup"),
    "ema_sweep": ("train", "ema_sweep"),
    "data": ("data", "source"),
    "celeba_crop": ("data", "celeba_crop"),
    "max_images": ("data", "max_images"),
    "hflip": ("data", "hflip"),
    "heldout": ("data", "heldout"),
}
GREYSCALE_BUILTINS = {"fashion-mnist"}

# Always stated by train_flags, for a reader; every other flag only where it differs.
STATED: tuple[str, ...] = (
    "data",
    "steps",
    "resolution",
    "channels",
    "filters",
    "gamma",
    "lambda_k",
    "eta",
    "lr",
)
STATED += ("batch_size", "seed")


def seed_flag(text: str) -> int | float | str:
    """argparse type of every --seed: the value as typed (1e30 and nan too), for
    `config.check_seed` to refuse in the command's one line ("error: seed must be a whole
    number from 0 to ..."), as the config refuses every other value, rather than with
    argparse's usage; 1e30 once reached torch and ended in an overflow traceback."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def config_from_flags(given: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """`base` (the defaults for a new run, the stored config on resume) with the given flags
    set; a new greyscale built-in gets one channel unless `channels` is given."""
    unknown = set(given) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown train flags {sorted(unknown)}; known: {sorted(FLAGS)}")
    given = {k: v for k, v in given.items() if v is not None}
    values = (base or RunConfig()).to_dict()
    if base is None:
        source = given.get("data", values["data"]["source"])
        if "channels" not in given and str(source) in GREYSCALE_BUILTINS:
            given["channels"] = 1
    for flag, value in given.items():
        section, name = FLAGS[flag]
        values[section][name] = str(value) if flag == "data" else value
    return RunConfig.from_dict(values)


def train_flags(config: RunConfig) -> list[str]:
    """The `train` flags that `config_from_flags` turns back into `config` (its inverse): for
    the dashboard's launches and the model cards' commands."""
    values, defaults = config.to_dict(), RunConfig().to_dict()
    words: list[str] = []
    for flag in [*STATED, *(f for f in FLAGS if f not in STATED)]:  # the stated ones first
        section, name = FLAGS[flag]
        value = values[section][name]
        if value is None or (flag not in STATED and value == defaults[section][name]):
            continue
        option = "--" + flag.replace("_", "-")
        if isinstance(value, bool):
            words.append(option if value else option.replace("--", "--no-", 1))
        else:
            words += [option, str(value)]
    return words


def train_command(config: RunConfig, out: str = "runs/reproduce") -> str:
    """A `python -m began_core train` command line that trains `config` into `out`."""
    return shlex.join(["python", "-m", "began_core", "train", "--out", out, *train_flags(config)])

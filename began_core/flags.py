"""The `train` command's flags, named once: which config field each sets, how a set of given
flags becomes a RunConfig (`config_from_flags`), and the way back (`train_flags`).

Below the command line, so that the model cards, the dashboard's launches and the CLI share one
mapping without any of them importing `cli`.
"""

from __future__ import annotations

import dataclasses
import shlex
import typing
from dataclasses import dataclass
from typing import Any

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .presets import preset_flags

SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}


@dataclass(frozen=True)
class Option:
    """One `train` flag as the config declares it (config.opt): where it goes and its type."""

    flag: str  # argparse dest: `filters` is --filters
    section: str  # "model", "train" or "data"
    name: str  # the config field
    type: type  # int, float, str or bool
    optional: bool  # None is a value: auto, detect, all
    default: Any
    help: str
    group: str  # a key of config.GROUPS
    frozen: bool  # an exact resume keeps the stored value
    form: bool  # the dashboard's launch form offers it
    default_text: str | None
    choices: tuple[Any, ...] | None
    metavar: str | None

    @property
    def option(self) -> str:
        return "--" + self.flag.replace("_", "-")


def _options() -> dict[str, Option]:
    found: dict[str, Option] = {}
    for section, kind in SECTIONS.items():
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            meta = f.metadata
            args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
            base = args[0] if args else hints[f.name]
            flag = meta["flag"] or f.name
            found[flag] = Option(
                flag=flag,
                section=section,
                name=f.name,
                type=base,
                optional=bool(args),
                default=f.default,
                help=meta["help"],
                group=meta["group"],
                frozen=meta["frozen"],
                form=meta["form"],
                default_text=meta["default_text"],
                choices=meta["choices"],
                metavar=meta["metavar"],
            )
    return found


# Every option, in the order the config declares them (model, train, data).
OPTIONS: dict[str, Option] = _options()
# Flag (argparse dest) -> (section, field). A flag left unset keeps the stored/default value.
FLAGS: dict[str, tuple[str, str]] = {o.flag: (o.section, o.name) for o in OPTIONS.values()}
# The fields an exact resume refuses to change, by section.
FROZEN: dict[str, tuple[str, ...]] = {
    section: tuple(o.name for o in OPTIONS.values() if o.section == section and o.frozen)
    for section in SECTIONS
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


def train_flags(config: RunConfig, preset: str | None = None) -> list[str]:
    """The `train` flags that `config_from_flags` turns back into `config` (its inverse): for
    the dashboard's launches and the model cards' commands. With `preset`, they begin with
    `--preset NAME` and state every setting that differs from the preset's, so the run records
    the preset it started from and still trains `config` exactly."""
    values = config.to_dict()
    if preset is None:
        defaults, words = RunConfig().to_dict(), []
    else:
        defaults, words = config_from_flags(preset_flags(preset)).to_dict(), ["--preset", preset]
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

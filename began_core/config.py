"""Frozen configuration of a BEGAN run: the model, its training and its data.

Every run writes the three of them, resolved, into its `config.json`; a checkpoint stores the
model part, from which `BEGAN(config)` rebuilds the exact architecture.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_RESOLUTIONS = (32, 64, 128, 256)
AUGMENT_POLICIES = ("translation", "cutout", "color")  # augment.py applies them


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the value and the fix."""


# Every seed that comes in (a run's, a sample grid's, an evaluation's, the explorer's) is a
# whole number in [0, SEED_MAX]. torch's CPU generator keeps only the low 32 bits of a seed
# (seed 5 + 2**32 draws what seed 5 draws), so a larger one would only repeat a smaller one,
# and the seeds derived from it (seed * 1_000_003 + epoch for the batch order) stay inside
# the 64 bits torch.manual_seed takes, which 1e30 overflowed.
SEED_MAX = 2**32 - 1


def check_seed(value: Any, what: str = "seed") -> int:
    """`value` as a seed: a whole number (an int, or a float such as 3.0) in [0, SEED_MAX];
    anything else raises ConfigError naming it."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or not 0 <= value <= SEED_MAX:
        shown = f"{value:g}" if isinstance(value, float) else repr(value)
        shown = str(int(value)) if whole and not isinstance(value, (bool, float)) else shown
        raise ConfigError(
            f"{what} must be a whole number from 0 to {SEED_MAX:,} (2**32 - 1), got {shown}."
        )
    return int(value)


def parse_policy(text: str | Sequence[str]) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' or 'none' -> ()."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]
    unknown = [n for n in names if n not in AUGMENT_POLICIES]
    if unknown:
        raise ValueError(
            f"unknown augmentation {', '.join(unknown)}: choose from {', '.join(AUGMENT_POLICIES)} "
            "(comma-separated, e.g. translation,cutout)"
        )
    return tuple(dict.fromkeys(names))  # in the order given, once each


def parse_half_lives(text: str) -> tuple[float, ...]:
    """'1,5,20' -> (1.0, 5.0, 20.0): half-lives of G's averages in thousands of images."""
    values = []
    for word in (w.strip() for w in str(text).split(",")):
        if not word:
            continue
        try:
            value = float(word)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{word!r} is not a half-life: give positive numbers of thousands of images, "
                "comma-separated (e.g. 1,5,20)"
            )
        values.append(value)
    return tuple(dict.fromkeys(values))


# Every option of a run is declared once, below, as a field with its help, its `train` flag
# group, whether an exact resume keeps it and whether the dashboard's form offers it (`opt`).
# The command line's flags, the dashboard's launcher and the resume check are derived from
# these declarations (flags.py).
GROUPS = {  # the `train` flag groups, in the order `--help` shows them
    "data": "data",
    "small": "small data: augmentation of what D sees (not in the paper; docs/getting-started.md, "
    "Training on small data)",
    "ema": "G_ema: a moving average of G's weights, saved beside G (not in the paper; the "
    "measurement: docs/results.md, G_ema)",
    "run": "run",
    "speed": "speed (default: bf16 on CUDA and on CPUs with native bf16, float32 on other CPUs; "
    "channels_last and fused Adam everywhere; the run's config.json says which path it took)",
    "model": "model (paper Figure 1)",
    "optim": "equilibrium and optimiser",
}


def opt(
    default: Any,
    help: str,
    *,
    group: str,
    flag: str | None = None,
    frozen: bool = False,
    form: bool = False,
    default_text: str | None = None,
    choices: tuple[Any, ...] | None = None,
    metavar: str | None = None,
) -> Any:
    """A configuration field and its `train` flag, declared together.

    `help` says what the option does; `--help` adds "(default X)", or `default_text` where the
    default needs words ("" for none). `flag` names the flag where it is not the field's name
    (`--filters` sets `n`). `frozen`: an exact resume refuses a different value (the run's
    trajectory depends on it); every model and data field is declared frozen. `form`: the
    dashboard's launch form offers it (runs/launch.LAUNCH_FLAGS); the rest stay at their
    defaults there."""
    if group not in GROUPS:
        raise ValueError(f"unknown flag group {group!r}; known: {sorted(GROUPS)}")
    meta: dict[str, Any] = {"help": help, "group": group, "flag": flag, "frozen": frozen}
    meta["form"] = form
    meta |= {"default_text": default_text, "choices": choices, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Paper Figure 1. The bottom of both networks is always 8x8."""

    resolution: int = opt(
        32, "square images: 32, 64, 128 or 256", group="model", form=True, frozen=True
    )
    channels: int = opt(
        3,
        "3 colour, 1 greyscale",
        group="model",
        frozen=True,
        choices=(1, 3),
        default_text="1 for fashion-mnist, else 3",
    )
    # filters of the first scale; scale i has (i + 1) * n in the encoder
    n: int = opt(
        64, "n, filters of the first scale", group="model", form=True, flag="filters", frozen=True
    )
    Nh: int = opt(64, "Nh, size of D's embedding h", group="model", flag="h_dim", frozen=True)
    Nz: int = opt(64, "Nz, size of z ~ U[-1, 1]^Nz", group="model", flag="z_dim", frozen=True)
    convs_per_scale: int = opt(2, "3x3 convolutions per scale", group="model", frozen=True)
    skip: bool = opt(
        False,
        "paper's skip connections: upsampled h0 concatenated at every scale",
        group="model",
        frozen=True,
    )
    vanishing_residual: bool = opt(
        False,
        "paper's vanishing residuals: a carry blend that decays to plain convolutions (with "
        "--carry-steps)",
        group="model",
        frozen=True,
    )

    def __post_init__(self) -> None:
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ConfigError(
                f"resolution {self.resolution} is not supported: BEGAN halves the image down to "
                f"8x8, so use one of {', '.join(map(str, SUPPORTED_RESOLUTIONS))}."
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (greyscale) or 3 (colour), got {self.channels}.")
        for name in ("n", "Nh", "Nz", "convs_per_scale"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")

    @property
    def num_scales(self) -> int:
        """Scales in each network: 32 -> 3 (32, 16, 8), 64 -> 4, 128 -> 5, 256 -> 6."""
        return int(math.log2(self.resolution // 8)) + 1


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation and the equilibrium controller."""

    steps: int = opt(10_000, "total training steps", group="run", form=True)
    batch_size: int = opt(16, "images per batch", group="optim", form=True, frozen=True)
    gamma: float = opt(
        0.5,
        "diversity ratio E[L(G(z))] / E[L(x)], in (0, 1]",
        group="optim",
        form=True,
        frozen=True,
    )
    lambda_k: float = opt(
        0.001, "gain of the k_t controller", group="optim", form=True, frozen=True
    )
    k_0: float = opt(0.0, "initial k_t", group="optim", flag="k0")
    eta: int = opt(
        1,
        "norm of the auto-encoder loss, |v - D(v)|^eta: 1 or 2",
        group="optim",
        form=True,
        frozen=True,
    )
    lr: float = opt(1e-4, "Adam learning rate", group="optim", form=True)
    beta1: float = opt(0.5, "Adam beta1", group="optim", frozen=True)
    beta2: float = opt(0.999, "Adam beta2", group="optim", frozen=True)
    # Learning-rate rule: every `lr_window` steps, the mean M_global over that window is
    # compared with the best earlier window mean; if it is not lower by `lr_tolerance`
    # (relative), the learning rate of both optimizers is halved, never below `lr_min`.
    lr_window: int = opt(
        2_000,
        "halve lr when the mean M_global of a window of this many steps does not improve",
        group="optim",
        frozen=True,
    )
    lr_tolerance: float = opt(0.0, "relative improvement a window must show", group="optim")
    lr_min: float = opt(1e-6, "floor of the learning rate", group="optim")
    carry_steps: int = opt(
        0, "steps over which the residual carry decays from 1 to 0", group="model"
    )
    seed: int = opt(0, "seed of weights, noise and data order", group="run", form=True, frozen=True)
    log_every: int = opt(10, "steps per metrics record", group="run", form=True)
    sample_every: int = opt(500, "steps per sample grid", group="run", form=True)
    checkpoint_every: int = opt(1_000, "steps per checkpoint", group="run", form=True)
    keep_checkpoints: int = opt(3, "checkpoints kept", group="run")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps", group="run")
    deterministic: bool = opt(False, "deterministic algorithms (bit-exact resume)", group="run")
    # The fast path (step.py). None = auto, decided by fast_path.py for the device: bf16 on CUDA
    # and on CPUs with native bf16 (float32 on the others), channels_last and fused Adam on
    # both; compile only when asked (on the CPU it did not pay: bench/results/cpu-options.md).
    amp: bool | None = opt(
        None,
        "bf16 autocast for the networks; losses and k_t stay float32",
        group="speed",
        form=True,
        default_text="",
    )
    channels_last: bool | None = opt(
        None, "NHWC memory layout", group="speed", form=True, default_text=""
    )
    fused_adam: bool | None = opt(None, "fused Adam kernels", group="speed", default_text="")
    compile: bool | None = opt(
        None,
        "torch.compile G and D",
        group="speed",
        default_text="off: on the CPU it did not pay",
    )
    # The whole step as one CUDA graph (training/graphed.py). None: on for a one-process CUDA
    # run without --compile (fast_path.GRAPH_AUTO); True needs a CUDA device and one process.
    graph: bool | None = opt(
        None,
        "the whole step as one CUDA graph (CUDA, one process)",
        group="speed",
        default_text="on for one CUDA process; off on the CPU",
    )
    # Augmentation of what D sees (augment.py). (An adaptive p, ADA's controller on the
    # held-out gap, was measured and did not beat a fixed p of 0.5 on the built-in faces, so it
    # is not offered: docs/results.md, Small data: measured.)
    augment: str = opt(
        "",
        "policies, comma-separated: translation, cutout, color. D then reconstructs T(v) for "
        "real and generated images alike, T drawn per image and use",
        group="small",
        form=True,
        frozen=True,
        default_text="none",
    )
    augment_p: float = opt(
        1.0,
        "probability of applying each policy to an image (measured best on the built-in "
        "faces: 0.5 with translation,cutout)",
        group="small",
        form=True,
        frozen=True,
    )
    heldout_every: int = opt(
        100, "steps between measurements of the held-out gap", group="small", frozen=True
    )
    score_every: int = opt(
        0,
        "steps between scores of G on the held-out images (classifier Frechet distance for "
        "built-ins, else SWD); the best-scoring checkpoint is kept apart and exported by "
        "default",
        group="small",
        form=True,
        default_text="0: off",
    )
    # G_ema, a moving average of G's weights (ema.py). It never feeds back into training.
    ema_kimg: float = opt(
        0.0,
        "half-life of G_ema in thousands of images",
        group="ema",
        form=True,
        default_text="0: no G_ema",
    )
    ema_rampup: float = opt(
        0.05,
        "the half-life is at most this share of the images seen so far (0: no ramp-up)",
        group="ema",
    )
    ema_sweep: str = opt(
        "",
        "more half-lives to keep beside G_ema, for measuring them (evaluate --generator "
        "G_ema:KIMG)",
        group="ema",
        metavar="KIMG,...",
        default_text="none",
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.gamma, (int, float)) and 0.0 < self.gamma <= 1.0):
            raise ConfigError(
                f"gamma must be in (0, 1], got {self.gamma}: it is the target ratio "
                "E[L(G(z))] / E[L(x)]; the paper uses 0.3, 0.5 and 0.7."
            )
        for name in ("gamma", "lambda_k", "k_0", "lr", "lr_min", "lr_tolerance", "beta1", "beta2"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}.")
        if not 0.0 <= self.k_0 <= 1.0:
            raise ConfigError(f"k_0 must be in [0, 1], got {self.k_0}.")
        if self.lambda_k <= 0:
            raise ConfigError(f"lambda_k must be positive, got {self.lambda_k} (paper: 0.001).")
        if self.eta not in (1, 2):
            raise ConfigError(f"eta must be 1 or 2, got {self.eta}.")
        if not self.lr > 0 or not self.lr_min > 0:
            raise ConfigError(f"lr and lr_min must be positive, got {self.lr} and {self.lr_min}.")
        positive = ("steps", "batch_size", "lr_window", "log_every", "sample_every")
        for name in (*positive, "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        object.__setattr__(self, "seed", check_seed(self.seed))  # 3.0 from a JSON file: 3
        if self.carry_steps < 0:
            raise ConfigError(f"carry_steps must be >= 0, got {self.carry_steps}.")
        try:
            parse_policy(self.augment)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        p = self.augment_p
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
            raise ConfigError(f"augment_p must be a probability in [0, 1], got {p!r}.")
        if not isinstance(self.heldout_every, int) or self.heldout_every < 1:
            raise ConfigError(
                f"heldout_every must be a positive integer, got {self.heldout_every}."
            )
        if not isinstance(self.score_every, int) or self.score_every < 0:
            raise ConfigError(f"score_every must be >= 0 (0: no scoring), got {self.score_every}.")
        for name in ("ema_kimg", "ema_rampup"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a number >= 0 (0: off), got {value!r}.")
        try:
            sweep = parse_half_lives(self.ema_sweep)
        except ValueError as e:
            raise ConfigError(f"ema_sweep: {e}") from None
        if sweep and not self.ema_kimg:
            raise ConfigError(
                "ema_sweep keeps averages beside G_ema: give --ema-kimg too (the half-life of "
                "G_ema, in thousands of images)."
            )


@dataclass(frozen=True)
class DataConfig:
    source: str = opt(
        "fluent-faces",
        "built-in dataset name, image folder or .zip; built-ins: see `python -m began_core "
        "datasets`",
        group="data",
        form=True,
        flag="data",
        frozen=True,
    )
    celeba_crop: bool | None = opt(
        None,
        "crop CelebA's aligned 178x218 images to the 128x128 box at (25, 50)",
        group="data",
        frozen=True,
        default_text="detect",
    )
    max_images: int | None = opt(
        None, "use at most this many images", group="data", frozen=True, default_text="all"
    )
    # On the 1,124 built-in faces it slows the drift into collapse after the best step (docs/results.md).
    hflip: bool = opt(
        False,
        "mirror a random half of every batch left to right (not in the paper)",
        group="data",
        form=True,
        frozen=True,
    )
    # D never sees held-out images, so its reconstruction of them against training images
    # shows memorisation.
    heldout: float = opt(
        0.0,
        "share of the images D never trains on, at least 64 of them (e.g. 0.05): their "
        "reconstruction loss against the training images' shows D memorising",
        group="data",
        form=True,
        frozen=True,
        default_text="0, none",
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.heldout, (int, float)) and 0.0 <= self.heldout < 0.5):
            raise ConfigError(
                f"heldout must be a share in [0, 0.5), got {self.heldout!r} (e.g. 0.05)."
            )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        t = self.train
        needs = [what for what, on in (("--score-every", t.score_every),) if on]
        if needs and not self.data.heldout:
            raise ConfigError(
                f"{' and '.join(needs)}: held-out images are needed; add --heldout 0.05 (a share of "
                "the data)."
            )

    @property
    def augmentation(self) -> bool:
        """Whether D sees augmented images at all."""
        return bool(parse_policy(self.train.augment)) and self.train.augment_p != 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            model=_build(ModelConfig, d.get("model", {})),
            train=_build(TrainConfig, d.get("train", {})),
            data=_build(DataConfig, d.get("data", {})),
        )


def _build(kind: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"unknown {kind.__name__} keys {sorted(unknown)}; known keys: {sorted(known)}."
        )
    return kind(**values)

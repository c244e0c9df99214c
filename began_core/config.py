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


@dataclass(frozen=True)
class ModelConfig:
    """Paper Figure 1. The bottom of both networks is always 8x8."""

    resolution: int = 32  # square images, one of SUPPORTED_RESOLUTIONS
    channels: int = 3  # 3 for colour, 1 for greyscale
    n: int = 64  # filters of the first scale; scale i has (i + 1) * n in the encoder
    Nh: int = 64  # embedding size of the discriminator's bottleneck h
    Nz: int = 64  # generator input size, z ~ U[-1, 1]^Nz
    convs_per_scale: int = 2
    skip: bool = False  # paper's skip connections: upsampled h0 concatenated at every scale
    vanishing_residual: bool = False  # paper's carry blend, decays to plain convs

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

    steps: int = 10_000
    batch_size: int = 16
    gamma: float = 0.5  # diversity ratio E[L(G(z))] / E[L(x)]
    lambda_k: float = 0.001  # proportional gain of the k_t controller
    k_0: float = 0.0
    eta: int = 1  # pixel norm of the auto-encoder loss, 1 or 2
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Learning-rate rule: every `lr_window` steps, the mean M_global over that window is
    # compared with the best earlier window mean; if it is not lower by `lr_tolerance`
    # (relative), the learning rate of both optimizers is halved, never below `lr_min`.
    lr_window: int = 2_000
    lr_tolerance: float = 0.0
    lr_min: float = 1e-6
    carry_steps: int = 0  # vanishing residual: carry c decays linearly from 1 to 0 over these steps
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 3
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    deterministic: bool = False  # torch.use_deterministic_algorithms, for bit-exact resume tests
    # The fast path (step.py). None = auto, decided by fast_path.py for the device: bf16 on CUDA
    # and on CPUs with native bf16 (float32 on the others), channels_last and fused Adam on
    # both; compile only when asked (on the CPU it did not pay: bench/results/cpu-options.md).
    amp: bool | None = None  # bf16 autocast for the networks; losses and k_t stay float32
    channels_last: bool | None = None  # NHWC memory layout for the convolutions
    fused_adam: bool | None = None  # one fused kernel per optimizer step (same update)
    compile: bool | None = None  # torch.compile of G and D (None: off)
    # The whole step as one CUDA graph (training/graphed.py). None: off until its CUDA tests
    # pass on a GPU (fast_path.GRAPH_AUTO); True needs a CUDA device and one process.
    graph: bool | None = None
    # Augmentation of what D sees (augment.py): policies "translation", "cutout", "color",
    # comma-separated ("" = none), each applied to an image with probability augment_p. (An
    # adaptive p, ADA's controller on the held-out gap, was measured and did not beat a fixed
    # p of 0.5 on the built-in faces, so it is not offered: README, Training on small data.)
    augment: str = ""
    augment_p: float = 1.0
    heldout_every: int = 100  # steps between measurements of the held-out gap
    score_every: int = 0  # steps between scores of G on the held-out images (0: none)
    # G_ema, a moving average of G's weights (ema.py), by its half-life in thousands of images
    # (0: none); the half-life ramps up to be at most ema_rampup times the images seen. It
    # never feeds back into training. ema_sweep keeps more averages beside it, to measure.
    ema_kimg: float = 0.0
    ema_rampup: float = 0.05
    ema_sweep: str = ""

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
    source: str = "fluent-faces"  # built-in name, folder, or .zip
    celeba_crop: bool | None = None  # None: detect CelebA's aligned 178x218 images
    max_images: int | None = None
    # Mirror a random half of every batch left to right (not in the paper). On the 1,124
    # built-in faces it slows the drift into collapse after the best step (README).
    hflip: bool = False
    # Share of the images held out of training (at least 64 of them when > 0): D never sees
    # them, so its reconstruction of them against training images shows memorisation.
    heldout: float = 0.0

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

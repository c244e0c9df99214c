"""Differentiable augmentation of what D sees (Zhao et al. 2020, DiffAugment; Karras et al. 2020,
ADA), for BEGAN.

With augmentation, every auto-encoder loss becomes L_T(v) = |T(v) - D(T(v))|^eta: D reconstructs
the augmented image, for real images and G's alike, in D's step and in G's, and G's gradient
flows through T. (Reconstructing the clean image instead would make D an inpainter that
rewards recalling training images.) T is drawn afresh for every image and every use.

Each policy applies to an image with probability p, independently of the others:

    translation  shift by up to 1/8 of the side in x and y, zero-filled
    cutout       one zero-filled square of half the side, centred anywhere in the image
    color        brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5),
                 clamped back to [-1, 1]

The draws are a pure function of (seed, step, use): the global batch's parameters come from one
stream, and each process takes its slice. So a resumed run and a run on any number of
processes augment the same images the same way, with no generator state to save.

Where that stream is drawn is a mode (`draws`). "host", the CPU's default: numpy, then copied to
the images' device, as the project has always drawn them, so CPU runs keep their numbers.
"device", CUDA's: a `torch.Generator` on the images' device, re-seeded from (seed, step) before
each step (`Augment.begin`) and drawn in the step's fixed order of uses (D's real batch, D's fake
batch, G's batch). A host draw costs a host-to-device copy per use and, worse, is frozen into a
CUDA graph at capture and replayed unchanged; the device draw is replayed afresh, because the
generator is registered with the graph (graphed.py) and a re-seed between replays is what the
replay reads. The two modes draw from the same distributions but not the same numbers (numpy's
PCG64 is not Philox), so a run keeps its mode: a resume on the same kind of device is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Uses of T within one step, each with its own draws: D's real batch, D's fake batch, G's batch.
USES = {"real": 1, "fake_D": 2, "fake_G": 3}
DRAWS = ("host", "device")  # where T's parameters are drawn (the module's docstring)


@dataclass(frozen=True)
class Draw:
    """Parameters of T for a batch of images, as tensors on the images' device."""

    shift: Tensor | None  # (B, 2) integer pixel shifts (dy, dx), 0 where not applied
    cut: Tensor | None  # (B, 2) integer centres (cy, cx) of the square; -inf row = no cutout
    cut_on: Tensor | None  # (B,) bool
    color: Tensor | None  # (B, 3) brightness offset, saturation factor, contrast factor
    color_on: Tensor | None  # (B,) bool


def draw(
    policy: tuple[str, ...],
    p: float,
    size: int,
    batch: int,
    key: Sequence[int],
    *,
    offset: int = 0,
    local: int | None = None,
    device: torch.device | str = "cpu",
) -> Draw:
    """Draw T's parameters for a global batch of `batch` images from the stream `key` (e.g.
    (seed, step, use)), and keep images [offset, offset + local) of it."""
    rng = np.random.default_rng([*map(int, key), 0xA06])
    local = batch if local is None else local
    part = slice(offset, offset + local)

    def on() -> np.ndarray:
        return rng.random(batch) < p

    def t(a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[part])).to(device, dtype)

    shift = cut = cut_on = color = color_on = None
    if "translation" in policy:
        r = max(1, size // 8)
        s = rng.integers(-r, r + 1, size=(batch, 2)) * on()[:, None]
        shift = t(s, torch.long)
    if "cutout" in policy:
        apply = on()
        cut = t(rng.integers(0, size, size=(batch, 2)), torch.long)
        cut_on = t(apply, torch.bool)
    if "color" in policy:
        apply = on()
        c = np.stack(
            [rng.uniform(-0.5, 0.5, batch), rng.uniform(0, 2, batch), rng.uniform(0.5, 1.5, batch)],
            axis=1,
        )
        color, color_on = t(c, torch.float32), t(apply, torch.bool)
    return Draw(shift, cut, cut_on, color, color_on)


def draw_on_device(
    policy: tuple[str, ...],
    p: float,
    size: int,
    batch: int,
    generator: torch.Generator,
    *,
    offset: int = 0,
    local: int | None = None,
) -> Draw:
    """`draw`'s parameters, from the distributions `draw` uses, drawn on the generator's device
    from `generator` as it stands: no host value, no host-to-device copy, so a CUDA graph
    replays fresh draws. Keeps images [offset, offset + local) of the global batch."""
    device = generator.device
    local = batch if local is None else local
    part = slice(offset, offset + local)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    def on() -> Tensor:
        return rand(batch) < p

    shift = cut = cut_on = color = color_on = None
    if "translation" in policy:
        r = max(1, size // 8)
        s = torch.randint(-r, r + 1, (batch, 2), generator=generator, device=device)
        shift = (s * on()[:, None])[part]
    if "cutout" in policy:
        apply = on()
        cut = torch.randint(0, size, (batch, 2), generator=generator, device=device)[part]
        cut_on = apply[part]
    if "color" in policy:
        apply = on()
        u = rand(batch, 3)  # (no tensor from host numbers: a graph cannot capture that copy)
        c = torch.stack([u[:, 0] - 0.5, u[:, 1] * 2.0, u[:, 2] + 0.5], dim=1)
        color, color_on = c[part], apply[part]
    return Draw(shift, cut, cut_on, color, color_on)


def step_seed(seed: int, step: int) -> int:
    """The device stream's seed for one step: 63 bits of numpy's SeedSequence of (seed, step)."""
    words = np.random.SeedSequence([int(seed), int(step), 0xA06D]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def apply(v: Tensor, d: Draw) -> Tensor:
    """T(v) for images v (B, C, H, W) in [-1, 1] under the drawn parameters; differentiable in v."""
    if d.color is not None and d.color_on is not None:
        v = _color(v, d.color.to(v.dtype), d.color_on)
    if d.shift is not None:
        v = _translate(v, d.shift)
    if d.cut is not None and d.cut_on is not None:
        v = _cutout(v, d.cut, d.cut_on)
    return v


def _translate(v: Tensor, shift: Tensor) -> Tensor:
    B, _, H, W = v.shape
    rows = torch.arange(H, device=v.device)[None, :] - shift[:, 0:1]  # (B, H) source rows
    cols = torch.arange(W, device=v.device)[None, :] - shift[:, 1:2]  # (B, W) source columns
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    b = torch.arange(B, device=v.device)[:, None, None]
    moved = v[b, :, rows.clamp(0, H - 1)[:, :, None], cols.clamp(0, W - 1)[:, None, :]]
    return (moved * inside[..., None].to(v.dtype)).permute(0, 3, 1, 2)  # (B, H, W, C) -> NCHW


def _cutout(v: Tensor, centre: Tensor, on: Tensor) -> Tensor:
    _, _, H, W = v.shape
    half_h, half_w = H // 4, W // 4  # a square of half the side
    y = torch.arange(H, device=v.device)[None, :]
    x = torch.arange(W, device=v.device)[None, :]
    in_y = (y >= centre[:, 0:1] - half_h) & (y < centre[:, 0:1] + half_h)
    in_x = (x >= centre[:, 1:2] - half_w) & (x < centre[:, 1:2] + half_w)
    hole = in_y[:, :, None] & in_x[:, None, :] & on[:, None, None]
    return v * (~hole)[:, None].to(v.dtype)


def _color(v: Tensor, c: Tensor, on: Tensor) -> Tensor:
    brightness, saturation, contrast = (c[:, i].view(-1, 1, 1, 1) for i in range(3))
    u = v + brightness
    if v.shape[1] > 1:
        grey = u.mean(1, keepdim=True)
        u = grey + (u - grey) * saturation
    mean = u.mean((1, 2, 3), keepdim=True)
    u = mean + (u - mean) * contrast
    return torch.where(on.view(-1, 1, 1, 1), u.clamp(-1, 1), v)


class Augment:
    """T for one training run: a policy, a probability p and the run's seed. `T(v, step, use)`
    augments a (local) batch; every call with the same (step, use) draws the same parameters.

    `draws` None lets the training step choose for its device (fast_path.py); alone, it draws
    on the host. With `draws="device"`, `begin(step, device)` re-seeds the device stream before
    each step and the uses draw from it in the step's order; `generator` is that stream (None
    before the first `begin`), which a CUDA graph registers."""

    def __init__(
        self,
        policy: tuple[str, ...],
        p: float,
        seed: int,
        *,
        rank: int = 0,
        world: int = 1,
        draws: str | None = None,
    ) -> None:
        if draws is not None and draws not in DRAWS:
            raise ValueError(f"draws must be one of {', '.join(DRAWS)}, got {draws!r}")
        self.policy, self.p, self.seed = policy, float(p), int(seed)
        self.rank, self.world, self.draws = rank, world, draws
        self.generator: torch.Generator | None = None
        self._step: int | None = None

    def __bool__(self) -> bool:
        return bool(self.policy) and self.p > 0

    def begin(self, step: int, device: torch.device) -> None:
        """Start step `step`'s draws (device mode; a no-op on the host, whose draws are keyed
        per use). A host-side re-seed: no device work, nothing to synchronise."""
        if self.draws != "device" or not self:
            return
        if self.generator is None or self.generator.device != torch.device(device):
            self.generator = torch.Generator(device)
        self.generator.manual_seed(step_seed(self.seed, step))
        self._step = step

    def __call__(self, v: Tensor, step: int, use: str) -> Tensor:
        if not self:
            return v
        local = len(v)
        if self.draws == "device":
            if self._step != step or self.generator is None:
                raise RuntimeError(
                    f"augmentation drawn on the device for step {step} before Augment.begin({step}) "
                    "re-seeded its stream: call begin(step, device) at the start of every step."
                )
            params = draw_on_device(
                self.policy,
                self.p,
                v.shape[-1],
                local * self.world,
                self.generator,
                offset=self.rank * local,
                local=local,
            )
            return apply(v, params)
        params = draw(
            self.policy,
            self.p,
            v.shape[-1],
            local * self.world,
            (self.seed, step, USES[use]),
            offset=self.rank * local,
            local=local,
            device=v.device,
        )
        return apply(v, params)

"""Moving through G's latent space: sampling z, interpolating between latents, GANSpace-style
directions, and the paper's gamma comparison (Figure 3).

UI-free, so that the Gradio explorer and a notebook call the same functions. Images are float
tensors (B, C, R, R) in [-1, 1]; latents z are (B, Nz) in [-1, 1], the support of the
U[-1, 1]^Nz that G was trained on, so every function here keeps z inside it. Going the other
way, from an image to its z, is `inversion.py`.

    model = hub.load("pretrained/x")
    x = sample(model, [0, 1, 2])                          # three seeds -> (3, C, R, R)
    strip = interpolate(model, z0, z1, steps=8, mode="slerp")
    dirs = pca_directions(model, k=8)                     # GANSpace-style slider directions
"""

from __future__ import annotations

import math
import numbers
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast

import torch
from torch import Tensor

from ..checkpoints import hub
from ..config import check_seed
from ..nn.model import BEGAN

Mode = Literal["linear", "spherical"]


# --------------------------------------------------------------------------- sampling


def z_from_seeds(model: BEGAN, seeds: int | Sequence[int]) -> Tensor:
    """One z ~ U[-1, 1]^Nz per seed, (B, Nz). Each seed has its own generator, so seed s gives
    the same z alone or in any batch. Seeds are whole numbers in [0, config.SEED_MAX]."""
    given: list[Any] = [seeds] if isinstance(seeds, numbers.Real) else list(cast(Sequence, seeds))
    if not given:
        raise ValueError("give at least one seed")
    device = next(model.parameters()).device
    zs = [model.sample_z(1, generator=torch.Generator().manual_seed(check_seed(s))) for s in given]
    return torch.cat(zs).to(device)


def sample(model: BEGAN, seeds_or_z: int | Sequence[int] | Tensor) -> Tensor:
    """G(z) in [-1, 1], (B, C, R, R), for seeds (see `z_from_seeds`) or a z of shape (B, Nz)."""
    z = seeds_or_z if isinstance(seeds_or_z, Tensor) else z_from_seeds(model, seeds_or_z)
    return model.generate(_check_z(model, z))


def _check_z(model: BEGAN, z: Tensor) -> Tensor:
    z = z.unsqueeze(0) if z.dim() == 1 else z
    if z.dim() != 2 or z.shape[1] != model.config.Nz:
        raise ValueError(f"z must be (B, {model.config.Nz}) for this model, got {tuple(z.shape)}")
    _check_finite(z, "z")
    return z.to(next(model.parameters()).device, torch.float32)


def _check_finite(values: Tensor, name: str) -> None:
    """Refuse NaN and infinities: clamped into [-1, 1] a NaN stays NaN, and G turned it into
    an all-black picture that looked like a result."""
    bad = ~torch.isfinite(values)
    if bad.any():
        where = [int(i) for i in bad.flatten().nonzero()[:3, 0]]
        shown = ", ".join(f"{name}[{i}] = {float(values.flatten()[i])}" for i in where)
        raise ValueError(f"{name} must be finite numbers, got {shown}")


# --------------------------------------------------------------------------- interpolation


def _as_t(t: float | Sequence[float] | Tensor, like: Tensor) -> Tensor:
    """Interpolation positions as a column (T, 1) on z's device."""
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).reshape(-1, 1)


def lerp(z0: Tensor, z1: Tensor, t: float | Sequence[float] | Tensor) -> Tensor:
    """(1 - t) z0 + t z1 for each t: (T, Nz) from two (Nz,) latents."""
    t = _as_t(t, z0)
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: float | Sequence[float] | Tensor) -> Tensor:
    """Spherical interpolation (White 2016, "Sampling generative networks"): along the great
    circle between z0 and z1, with the norm interpolated linearly. A straight line through a
    high-dimensional cube passes nearer the centre than samples of U[-1, 1]^Nz ever lie; the arc
    keeps every frame as typical as its ends. Falls back to `lerp` for (anti)parallel ends."""
    t = _as_t(t, z0)
    n0, n1 = z0.norm(), z1.norm()
    if n0 < 1e-8 or n1 < 1e-8:
        return lerp(z0, z1, t)
    cos = torch.dot(z0 / n0, z1 / n1).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4 or (math.pi - omega).abs() < 1e-4:
        return lerp(z0, z1, t)
    u0, u1 = z0 / n0, z1 / n1
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)


def interpolate(
    model: BEGAN, z0: Tensor, z1: Tensor, steps: int = 8, mode: Mode = "spherical"
) -> Tensor:
    """G along the path from z0 to z1, both ends included: (steps, C, R, R).

    The path is clipped to [-1, 1] (a spherical arc can bulge a little out of the cube)."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (both ends), got {steps}")
    if mode not in ("linear", "spherical"):
        raise ValueError(f"mode must be 'linear' or 'spherical', got {mode!r}")
    z0, z1 = _check_z(model, z0)[0], _check_z(model, z1)[0]
    t = torch.linspace(0, 1, steps)
    path = (lerp if mode == "linear" else slerp)(z0, z1, t)
    return model.generate(path.clamp(-1, 1))


# --------------------------------------------------------------------------- latent directions


@dataclass(frozen=True)
class Directions:
    """Principal directions of G in z space, strongest first.

    vectors: (k, Nz), unit length. explained_variance: (k,), the share of the activations'
    variance along each principal component (sums to at most 1)."""

    vectors: Tensor
    explained_variance: Tensor
    layer: str

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


_DIRECTIONS: weakref.WeakKeyDictionary[BEGAN, dict[tuple, Directions]] = weakref.WeakKeyDictionary()


def _first_block(model: BEGAN, z: Tensor) -> Tensor:
    """G's activation after its first scale (8x8, the first non-linearity), flattened."""
    dec = model.G.decoder
    h0 = dec.fc(z).view(-1, dec.n, 8, 8)  # (B, n, 8, 8), linear in z
    return dec.blocks[0](h0).flatten(1)  # (B, n * 64)


def _version(p: Tensor) -> int:
    """A weight's in-place version counter (0 for an inference tensor, which has none and
    cannot be changed in place anyway)."""
    return 0 if p.is_inference() else p._version


@torch.inference_mode()
def pca_directions(model: BEGAN, n_samples: int = 2048, k: int = 8, seed: int = 0) -> Directions:
    """Directions in z space that change G's output most, as GANSpace does for BigGAN
    (Härkönen et al. 2020): PCA of an early activation y = G_1(z) over random z, then each
    principal component is carried back to z space by linear regression of z on the PCA
    coordinates. Cached per model (and per weights version), so sliders cost nothing after
    the first call."""
    key = (n_samples, k, seed, sum(_version(p) for p in model.G.parameters()))
    cache = _DIRECTIONS.setdefault(model, {})
    if key in cache:
        return cache[key]
    if not 1 <= k <= model.config.Nz:
        raise ValueError(f"k must be in [1, Nz={model.config.Nz}], got {k}")
    if n_samples < 2 * k:
        raise ValueError(f"n_samples must be at least 2k = {2 * k}, got {n_samples}")
    device = next(model.parameters()).device
    z = model.sample_z(n_samples, generator=torch.Generator().manual_seed(seed)).cpu()
    y = torch.cat([_first_block(model, c.to(device)).float().cpu() for c in z.split(512)])
    y = y - y.mean(0)
    # Randomised SVD: only the top k components of an (n_samples, n*64) matrix are needed.
    _, S, V = torch.pca_lowrank(y, q=min(k + 8, *y.shape), center=False, niter=4)
    coords = y @ V[:, :k]  # (N, k) PCA coordinates
    # Regression z ~ coords U: row i of U is how z moves when PC i grows by one.
    U = torch.linalg.lstsq(coords, z - z.mean(0)).solution  # (k, Nz)
    total = y.square().sum()
    directions = Directions(
        vectors=(U / U.norm(dim=1, keepdim=True)).to(device),
        explained_variance=(S[:k].square() / total).clamp(max=1.0),
        layer="G.decoder.blocks[0]",
    )
    cache[key] = directions
    return directions


def move(z: Tensor, directions: Directions | Tensor, amounts: Sequence[float] | Tensor) -> Tensor:
    """z + sum_i amounts[i] * directions[i], clipped to [-1, 1]; z is (Nz,) or (B, Nz).

    Directions have unit length, so an amount is a distance in z space (a typical z lies about
    sqrt(Nz / 3) from the origin)."""
    vectors = directions.vectors if isinstance(directions, Directions) else directions
    a = torch.as_tensor(amounts, dtype=vectors.dtype, device=vectors.device).reshape(-1)
    _check_finite(a, "amounts")
    _check_finite(z, "z")
    if a.numel() > vectors.shape[0]:
        raise ValueError(f"{a.numel()} amounts for {vectors.shape[0]} directions")
    return (z + a @ vectors[: a.numel()]).clamp(-1, 1)


# --------------------------------------------------------------------------- gamma comparison


def gamma_grid(models: Sequence[BEGAN], z: Tensor) -> list[Tensor]:
    """Paper Figure 3: the same z through each model, one (B, C, R, R) batch per model.

    The models must share Nz (their resolutions may differ)."""
    if not models:
        raise ValueError("give at least one model")
    sizes = {m.config.Nz for m in models}
    if len(sizes) > 1:
        raise ValueError(
            f"the models take different latent sizes Nz {sorted(sizes)}: one z cannot feed them all"
        )
    return [sample(m, z) for m in models]


class Origin(NamedTuple):
    gamma: float | None  # the diversity ratio it was trained at
    data: str | None  # the data source it was trained on, e.g. "fluent-faces"


def read_origin(checkpoint: str | os.PathLike) -> Origin:
    """What a local checkpoint was trained at and on, from its training.json (or its run's
    config.json); None for what it does not say."""
    run = (hub.read_training(checkpoint) or {}).get("run", {})
    try:
        gamma = float(run["train"]["gamma"])
    except (TypeError, KeyError, ValueError):
        gamma = None
    data = run.get("data", {}).get("source") if isinstance(run.get("data"), dict) else None
    return Origin(gamma, data if isinstance(data, str) else None)

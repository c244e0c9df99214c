"""Exploring a trained generator: sampling, interpolation, latent directions, inversion, and
the paper's two comparisons (mirror interpolation, Figure 4d; gamma, Figure 3).

UI-free, so that the Gradio explorer and a notebook call the same functions. Images are float
tensors (B, C, R, R) in [-1, 1]; latents z are (B, Nz) in [-1, 1], the support of the
U[-1, 1]^Nz that G was trained on, so every function here keeps z inside it.

    model = hub.load("pretrained/x")
    x = sample(model, [0, 1, 2])                          # three seeds -> (3, C, R, R)
    strip = interpolate(model, z0, z1, steps=8, mode="slerp")
    dirs = pca_directions(model, k=8)                     # GANSpace-style slider directions
    z, x_hat, error = invert(model, x)                    # argmin_z |x - G(z)|, z in [-1, 1]
"""

from __future__ import annotations

import io
import math
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.func import functional_call

from . import hub
from .data import load_image
from .model import BEGAN

Mode = Literal["linear", "spherical"]

# prepare_image refuses anything larger: a decompression bomb must fail before it is decoded.
MAX_PIXELS = 4096 * 4096
MAX_BYTES = 20 * 2**20


# --------------------------------------------------------------------------- sampling


def z_from_seeds(model: BEGAN, seeds: int | Sequence[int]) -> Tensor:
    """One z ~ U[-1, 1]^Nz per seed, (B, Nz). Each seed has its own generator, so seed s gives
    the same z alone or in any batch."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    device = next(model.parameters()).device
    zs = [model.sample_z(1, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.cat(zs).to(device)


def sample(model: BEGAN, seeds_or_z: int | Sequence[int] | Tensor) -> Tensor:
    """G(z) in [-1, 1], (B, C, R, R), for seeds (see `z_from_seeds`) or a z of shape (B, Nz)."""
    z = seeds_or_z if isinstance(seeds_or_z, Tensor) else z_from_seeds(model, seeds_or_z)
    return model.generate(_check_z(model, z))


def _check_z(model: BEGAN, z: Tensor) -> Tensor:
    z = z.unsqueeze(0) if z.dim() == 1 else z
    if z.dim() != 2 or z.shape[1] != model.config.Nz:
        raise ValueError(f"z must be (B, {model.config.Nz}) for this model, got {tuple(z.shape)}")
    return z.to(next(model.parameters()).device, torch.float32)


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
    if a.numel() > vectors.shape[0]:
        raise ValueError(f"{a.numel()} amounts for {vectors.shape[0]} directions")
    return (z + a @ vectors[: a.numel()]).clamp(-1, 1)


# --------------------------------------------------------------------------- inversion


class Inversion(NamedTuple):
    """z: (B, Nz) or (Nz,); reconstruction G(z) in [-1, 1], shaped like the image;
    error: mean |x - G(z)| per image on the [-1, 1] scale, a tensor (B,) or ()."""

    z: Tensor
    reconstruction: Tensor
    error: Tensor


def invert(
    model: BEGAN,
    image: Tensor,
    *,
    steps: int = 300,
    restarts: int = 8,
    lr: float = 0.05,
    seed: int = 0,
    candidates: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Inversion:
    """argmin_z |x - G(z)| over z in [-1, 1]^Nz: the paper's inversion of G (section 4.5).

    Adam on z with the learning rate decaying along a cosine, z clipped to [-1, 1] after every
    step, from `restarts` starts per image; the best z seen is kept. The starts are the best
    `restarts` of `candidates` random z (one forward pass, cheaper than a step), which helps
    more than more steps. `image` is (C, R, R) or a batch (B, C, R, R) in [-1, 1], at the
    model's resolution and channels (see `prepare_image`); all of a batch is inverted at once.
    `progress(step, steps)` is called after every step.
    """
    cfg = model.config
    single = image.dim() == 3
    x = image.unsqueeze(0) if single else image
    if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.resolution, cfg.resolution):
        raise ValueError(
            f"image must be (C, R, R) or (B, C, R, R) with C={cfg.channels}, R={cfg.resolution} "
            f"for this model, got {tuple(image.shape)}; prepare_image() converts any picture."
        )
    if steps < 0 or restarts < 1 or candidates < restarts or lr <= 0:
        raise ValueError(
            f"need steps >= 0, 1 <= restarts <= candidates and lr > 0, got steps={steps}, "
            f"restarts={restarts}, candidates={candidates}, lr={lr}"
        )
    device = next(model.parameters()).device
    x = x.to(device, torch.float32)
    B, R = x.shape[0], restarts
    generator = torch.Generator().manual_seed(seed)

    # G with its weights detached: gradients flow to z alone, and the shared model is left
    # untouched (other threads may sample from it meanwhile).
    weights = {name: w.detach() for name, w in model.G.named_parameters()}

    def loss_of(z: Tensor, target: Tensor) -> Tensor:  # per row: mean |x - G(z)|
        return (functional_call(model.G, weights, (z,)) - target).abs().flatten(1).mean(1)

    with torch.inference_mode(False), torch.enable_grad():
        # Starts: the best R of `candidates` random z for each image.
        with torch.no_grad():
            pool = model.sample_z(B * candidates, generator=generator).to(device)
            pool = pool.view(B, candidates, -1)
            pool_loss = torch.stack(
                [loss_of(pool[b], x[b : b + 1].expand(candidates, -1, -1, -1)) for b in range(B)]
            )  # (B, candidates)
            best_start = pool_loss.topk(R, dim=1, largest=False).indices  # (B, R)
            z0 = torch.gather(pool, 1, best_start[..., None].expand(-1, -1, cfg.Nz))
        target = x.repeat_interleave(R, dim=0)  # (B*R, C, H, W), R copies of each image
        z = z0.reshape(B * R, -1).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr, betas=(0.9, 0.999))
        best_z = z.detach().clone()
        best_loss = torch.full((B * R,), float("inf"), device=device)
        for step in range(steps + 1):
            loss = loss_of(z, target)  # (B*R,)
            with torch.no_grad():
                better = loss < best_loss
                best_loss = torch.where(better, loss, best_loss)
                best_z[better] = z[better]
            if step == steps:
                break
            for group in optimizer.param_groups:  # cosine decay to lr / 10
                group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            # Each z only affects its own row: the sum gives every start its own gradient.
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                z.clamp_(-1, 1)
            if progress is not None:
                progress(step + 1, steps)
    # The best start of each image.
    pick = best_loss.view(B, R).argmin(1)
    z_best = best_z.view(B, R, -1)[torch.arange(B), pick]  # (B, Nz)
    reconstruction = model.generate(z_best)
    error = (reconstruction - x).abs().flatten(1).mean(1).detach()
    if single:
        return Inversion(z_best[0], reconstruction[0], error[0])
    return Inversion(z_best, reconstruction, error)


@dataclass(frozen=True)
class Mirror:
    """Paper Figure 4d: an image, its horizontal flip, both inverted, and G along the path
    between the two latents. Images in [-1, 1]; errors are mean |x - G(z)|."""

    image: Tensor  # (C, R, R)
    flipped: Tensor  # (C, R, R)
    z: Tensor  # (Nz,) for the image
    z_flipped: Tensor  # (Nz,) for the flip
    reconstruction: Tensor  # G(z)
    reconstruction_flipped: Tensor  # G(z_flipped)
    error: float
    error_flipped: float
    frames: Tensor  # (steps, C, R, R), G(z) ... G(z_flipped)


def mirror_interpolation(
    model: BEGAN,
    image: Tensor,
    steps: int = 8,
    mode: Mode = "spherical",
    *,
    invert_steps: int = 300,
    restarts: int = 8,
    lr: float = 0.05,
    seed: int = 0,
    candidates: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Mirror:
    """Invert `image` (C, R, R) and its mirror image together (see `invert` for the options),
    then G along the path between the two latents, `steps` frames."""
    if image.dim() != 3:
        raise ValueError(f"image must be one (C, R, R) image, got {tuple(image.shape)}")
    flipped = image.flip(-1)
    z, reconstruction, error = invert(
        model,
        torch.stack([image, flipped]),
        steps=invert_steps,
        restarts=restarts,
        lr=lr,
        seed=seed,
        candidates=candidates,
        progress=progress,
    )
    frames = interpolate(model, z[0], z[1], steps=steps, mode=mode)
    return Mirror(
        image=image,
        flipped=flipped,
        z=z[0],
        z_flipped=z[1],
        reconstruction=reconstruction[0],
        reconstruction_flipped=reconstruction[1],
        error=float(error[0]),
        error_flipped=float(error[1]),
        frames=frames,
    )


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


# --------------------------------------------------------------------------- input images


def prepare_image(
    image: Image.Image | np.ndarray | str | os.PathLike | bytes, resolution: int, channels: int
) -> tuple[Tensor, list[str]]:
    """Any picture -> (C, R, R) float tensor in [-1, 1] for a model, with notes on what changed.

    Accepts a PIL image, an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (uint8, or float in
    [0, 1]), a file path or the file's bytes. Prepared as the training data is
    (`data.load_image`): alpha onto white, centre square crop, resize. Colour and greyscale are
    converted to what the model makes, with a note. Raises ValueError for what is not an image,
    a file over 20 MB, or more than 4096 x 4096 pixels (checked before decoding).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"no image file at {path}")
        _check_bytes(path.stat().st_size)
        source: io.BytesIO | Path = path
    elif isinstance(image, (bytes, bytearray)):
        _check_bytes(len(image))
        source = io.BytesIO(image)
    elif isinstance(image, np.ndarray):
        source = _png(_array_to_pil(image))
    elif isinstance(image, Image.Image):
        source = _png(image)
    else:
        raise ValueError(f"not an image: got a {type(image).__name__}")
    try:
        with Image.open(source) as im:
            size, mode = im.size, im.mode
            if size[0] * size[1] > MAX_PIXELS:
                raise ValueError(
                    f"the image is {size[0]} x {size[1]} pixels; the limit is "
                    f"{MAX_PIXELS:,} pixels (4096 x 4096): scale it down first."
                )
        if isinstance(source, io.BytesIO):
            source.seek(0)
        u8 = load_image(source, resolution, channels)  # (C, R, R)
    except UnidentifiedImageError:
        raise ValueError(
            "not an image: the file could not be read as PNG, JPEG, WebP, BMP, GIF or any "
            "other picture format."
        ) from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"the image file is corrupt or truncated: {e}") from None
    notes = []
    grey = mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
    if grey and channels == 3:
        notes.append("greyscale image converted to RGB: this model makes colour images")
    elif not grey and channels == 1 and mode != "P":
        notes.append("colour image converted to greyscale: this model makes greyscale images")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        notes.append("transparent parts put on white, as in the training data")
    if size[0] != size[1]:
        notes.append(f"{size[0]} x {size[1]} image centre-cropped to a square")
    if max(size) != resolution:
        notes.append(f"resized to {resolution} x {resolution}")
    x = torch.from_numpy(u8.astype(np.float32)).div_(127.5).sub_(1.0)
    return x, notes


def _check_bytes(n: int) -> None:
    if n > MAX_BYTES:
        raise ValueError(f"the file is {n / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB.")


def _png(im: Image.Image) -> io.BytesIO:
    """A PIL image as an in-memory PNG, so that one decoder (data.load_image) prepares
    every input the way the training data was prepared."""
    if im.width * im.height > MAX_PIXELS:
        raise ValueError(
            f"the image is {im.width} x {im.height} pixels; the limit is {MAX_PIXELS:,} pixels "
            "(4096 x 4096): scale it down first."
        )
    if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", compress_level=1)
    buffer.seek(0)
    return buffer


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise ValueError(
            f"not an image: an array of shape {a.shape}; expected (H, W), (H, W, 1), (H, W, 3) "
            "or (H, W, 4)"
        )
    if a.size == 0:
        raise ValueError("not an image: the array is empty")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise ValueError(f"not an image: an array of {a.dtype} with non-finite values")
        scale = 255.0 if a.max() <= 1.0 else 1.0  # floats in [0, 1], or already 0..255
        a = np.clip(a.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)

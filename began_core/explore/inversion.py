"""Inverting G: the z whose G(z) is closest to a real image (paper section 4.5), and the
paper's mirror interpolation (Figure 4d) between an image and its horizontal flip.

    z, x_hat, error = invert(model, x)                    # argmin_z |x - G(z)|, z in [-1, 1]
    m = mirror_interpolation(model, x[0], steps=8)        # m.frames: G along the path
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.func import functional_call

from ..nn.model import BEGAN
from .latent import Mode, interpolate


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

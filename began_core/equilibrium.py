"""The BEGAN equilibrium in five pure functions, shared by the trainer, the apps and the tests.

Notation of the paper (section 3):

    L(v)      = mean over pixels |v - D(v)|^eta            auto-encoder loss of one image
    L_D       = L(x) - k_t * L(G(z_D))                      for D's weights
    L_G       = L(G(z_G))                                   for G's weights
    k_{t+1}   = clip(k_t + lambda_k * (gamma * L(x) - L(G(z_G))), 0, 1)
    M_global  = L(x) + |gamma * L(x) - L(G(z_G))|

gamma = E[L(G(z))] / E[L(x)] is the diversity ratio. k_t is a controller state, never
differentiated. Every function accepts Python floats or tensors.
"""

from __future__ import annotations

from typing import TypeVar, cast

import torch
from torch import Tensor

Number = TypeVar("Number", float, Tensor)


def ae_loss(v: Tensor, D_v: Tensor, eta: int = 1) -> Tensor:
    """L(v) per sample, shape (B,): the mean over pixels of |v - D(v)|^eta."""
    if v.shape != D_v.shape:
        raise ValueError(f"image {tuple(v.shape)} and reconstruction {tuple(D_v.shape)} differ")
    error = (v.float() - D_v.float()).abs()  # float32 even when the networks ran in bf16
    if eta == 2:
        error = error.square()
    elif eta != 1:
        raise ValueError(f"eta must be 1 or 2, got {eta}")
    return error.flatten(1).mean(1)


def discriminator_loss(L_x: Tensor, L_G_zD: Tensor, k_t: float | Tensor) -> Tensor:
    """L_D = L(x) - k_t * L(G(z_D)); k_t is a constant here, not a parameter."""
    if isinstance(k_t, Tensor):
        k_t = k_t.detach()
    return L_x - k_t * L_G_zD


def balance(L_x: Number, L_G: Number, gamma: float) -> Number:
    """gamma * L(x) - L(G(z)): positive when D auto-encodes fakes too well (G is winning)."""
    return gamma * L_x - L_G


def update_k(
    k_t: Number, L_x: Number, L_G: Number, gamma: float, lambda_k: float, clip: bool = True
) -> Number:
    """One step of the proportional controller, clipped to [0, 1]. `clip=False` exists only
    to show (in the classroom) what the clip prevents; training always clips."""
    if isinstance(k_t, Tensor) or isinstance(L_x, Tensor) or isinstance(L_G, Tensor):
        # Mixed arguments (a float k_t, tensor losses) make a tensor, whatever Number says.
        error = cast(Tensor, balance(_plain(L_x), _plain(L_G), gamma))  # type: ignore[type-var]
        k_next = _plain(k_t) + lambda_k * error
        return cast(Number, torch.clamp(k_next, 0.0, 1.0) if clip else k_next)
    k_next = k_t + lambda_k * balance(L_x, L_G, gamma)
    return min(max(k_next, 0.0), 1.0) if clip else k_next


def M_global(L_x: Number, L_G: Number, gamma: float) -> Number:
    """Convergence measure: low when D reconstructs real images well and the balance holds."""
    b = balance(L_x, L_G, gamma)
    return L_x + (b.abs() if isinstance(b, Tensor) else abs(b))


def _plain(v: float | Tensor) -> float | Tensor:
    return v.detach() if isinstance(v, Tensor) else v

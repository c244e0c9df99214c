"""BEGAN on 2-D points, small enough to train live in a page and to step through by hand.

The objective is the image trainer's, from equilibrium.py: D is an auto-encoder, L(v) its
reconstruction error, L_D = L(x) - k_t L(G(z_D)), L_G = L(G(z_G)), and the k_t controller.
What changes is how a point is shown to D. Given the raw 2-D point (`view="point"`), D either
learns the identity (code of 2) or cannot fit the data (code of 1); see docs/classroom.md. By
default each point is drawn as a small image of a Gaussian blob
(`view="blob"`), differentiably, so that D auto-encodes images as in the paper and G, which
still outputs a 2-D point, gets its gradient through the drawing.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..equilibrium import M_global, ae_loss, discriminator_loss, update_k
from . import points as points_lib

EXTENT = 1.0  # the normalised data lie in about [-0.85, 0.85]; blobs are drawn on [-1, 1]^2
PACK_NORMS = ("mean", "clamp")
_init_lock = threading.Lock()  # weight init uses torch's global RNG, forked under this lock


@dataclass(frozen=True)
class Design:
    """What the networks are; fixed for a model's life."""

    view: str = "blob"  # "blob": D auto-encodes an image of each point; "point": the 2-D point
    resolution: int = 16  # blob images are resolution x resolution
    blob: float = 1.0  # blob standard deviation, in pixels
    code: int = 8  # D's bottleneck h
    width: int = 64  # hidden units of every layer of G and D
    Nz: int = 8  # z ~ Uniform[-1, 1]^Nz
    batch: int = 256
    d_steps: int = 1  # D updates per full step
    spread: float = 0.0  # if > 0, G's last layer starts scaled so G(z) has this std per axis
    bounded: bool = False  # G(z) = tanh(.): its points stay on D's canvas [-1, 1]^2
    warmup: int = 0  # extra D updates before the first full step
    # Packing (PacGAN's idea, kept inside BEGAN): D auto-encodes one image per `pack`
    # consecutive points, the sum of their blobs normalised by `pack_norm`: "mean" (divided by
    # pack: every pack carries one blob's worth of ink) or "clamp" (each pixel capped at 1).
    # L(v) is then per pack, and L(x), L(G(z)) are means over a batch's batch / pack packs.
    pack: int = 1
    pack_norm: str = "mean"

    def __post_init__(self) -> None:
        if self.view not in ("blob", "point"):
            raise ValueError(f"view must be 'blob' or 'point', got {self.view!r}")
        for name in ("resolution", "code", "width", "Nz", "batch", "d_steps", "pack"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.pack_norm not in PACK_NORMS:
            raise ValueError(f"pack_norm must be one of {PACK_NORMS}, got {self.pack_norm!r}")
        if self.pack > 1 and self.view != "blob":
            raise ValueError("packs are drawn as images: pack > 1 needs view='blob'")
        if self.batch % self.pack:
            raise ValueError(
                f"batch ({self.batch}) must be divisible by pack ({self.pack}): "
                "D sees batch / pack images of pack points each"
            )


@dataclass
class Knobs:
    """What a teacher may change mid-run."""

    gamma: float = 0.5
    lambda_k: float = 0.1  # L(v) is about 10x smaller than on images, and so is each step
    lr_D: float = 1e-3
    lr_G: float = 1e-3
    eta: int = 1
    clip_k: bool = True


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ELU between them (the paper's non-linearity), linear at the end."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class Drawing(nn.Module):
    """Points (B, 2) in the normalised frame -> images (B, R*R) of Gaussian blobs in [0, 1].

    Pixel j sits at (axis[j // R], axis[j % R]); its value is exp(-d2 / 2s^2) with
    d2 = (p_x - axis[j // R])^2 + (p_y - axis[j % R])^2. The separable form
    exp(-dx^2 / 2s^2) exp(-dy^2 / 2s^2) is cheaper still, but rounds otherwise, and the measurements in
    docs/classroom.md were made with this one (2-D GAN runs diverge on rounding)."""

    def __init__(self, resolution: int, blob_pixels: float):
        super().__init__()
        axis = torch.linspace(-EXTENT, EXTENT, resolution)
        self.register_buffer("grid", torch.cartesian_prod(axis, axis))  # (R*R, 2) pixel centres
        self.register_buffer("axis", axis, persistent=False)  # the R distinct pixel coordinates
        self.two_s2 = 2 * (blob_pixels * 2 * EXTENT / (resolution - 1)) ** 2

    def forward(self, p: Tensor) -> Tensor:
        return _Blobs.apply(p, self.axis, self.two_s2)


class _Blobs(torch.autograd.Function):
    """The blob drawing, value for value and gradient for gradient what autograd computes for
    `exp(-((p[:, None] - grid[None]) ** 2).sum(-1) / two_s2)`, the same operations in the same
    order, less the repeats: each of the R*R pixels' differences is one of R per axis, so
    they are taken once, (B, R) per axis, not (B, R*R, 2). (Gradient for gradient given a
    contiguous incoming gradient, which is what D's first layer passes back.)"""

    @staticmethod
    def forward(ctx, p: Tensor, axis: Tensor, two_s2: float) -> Tensor:
        dx = p[:, 0:1] - axis  # (B, R): p_x minus each pixel column's x
        dy = p[:, 1:2] - axis
        B, R = dx.shape
        d2 = (dx.square()[:, :, None] + dy.square()[:, None, :]).reshape(B, R * R)
        out = d2.neg_().div_(two_s2).exp_()
        ctx.save_for_backward(out, dx, dy)
        ctx.two_s2 = two_s2
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        out, dx, dy = ctx.saved_tensors
        B, R = dx.shape
        g = (grad * out).div_(ctx.two_s2).neg_()  # through exp, the division and the minus
        # d(d2)/dp = 2 (p - pixel): the products written straight into the (B, R*R, 2) layout
        # that autograd reduces over the pixels, so that the sum adds in the same order.
        g = g.reshape(B, R, R)
        products = torch.empty(B, R, R, 2, dtype=g.dtype, device=g.device)
        torch.mul(g, (2 * dx)[:, :, None], out=products[..., 0])
        torch.mul(g, (2 * dy)[:, None, :], out=products[..., 1])
        grad_p = products.view(B, R * R, 2).sum(1)
        return grad_p, None, None


class AutoEncoder(nn.Module):
    """D: v -> D(v), an encoder to the code h and a decoder back."""

    def __init__(self, design: Design):
        super().__init__()
        n = design.resolution**2 if design.view == "blob" else 2
        self.draw = Drawing(design.resolution, design.blob) if design.view == "blob" else None
        self.pack, self.pack_norm = design.pack, design.pack_norm
        w = design.width
        self.encoder = mlp([n, w, w, design.code])  # (B, n) -> (B, code)
        self.decoder = mlp([design.code, w, w, n])  # (B, code) -> (B, n)

    def view(self, p: Tensor) -> Tensor:
        """What D sees of points (B, 2): each point's image, or the point itself; with packs,
        one image per `pack` consecutive points, (B / pack, R*R)."""
        if self.draw is None:
            return p
        if self.pack == 1:
            return self.draw(p)
        if len(p) % self.pack:
            raise ValueError(f"{len(p)} points do not make packs of {self.pack}")
        blobs = self.draw(p)
        return self._normalise(blobs.reshape(-1, self.pack, blobs.shape[1]).sum(1))

    def view_alone(self, p: Tensor) -> Tensor:
        """For each point, the image of a pack whose points all sit there (B, R*R): what D
        sees of a G collapsed onto that point. Without packs, the point's own image."""
        if self.draw is None or self.pack == 1:
            return self.view(p)
        blobs = self.draw(p)
        return blobs if self.pack_norm == "mean" else self._normalise(blobs * self.pack)

    def _normalise(self, ink: Tensor) -> Tensor:
        return ink / self.pack if self.pack_norm == "mean" else ink.clamp(max=1.0)

    def forward(self, v: Tensor) -> Tensor:
        return self.decoder(self.encoder(v))

    def loss(self, p: Tensor, eta: int) -> Tensor:
        """L(v) per image D sees, (B / pack,): ae_loss of the view and its reconstruction."""
        v = self.view(p)
        return ae_loss(v, self(v), eta)


class Classroom:
    """One 2-D BEGAN: data, G, D, both optimisers, k_t; seeded and deterministic.

    `update_D`, `update_G` and `update_k` each change only what they name (and the random
    stream); `step` is one round of all three, in the image trainer's order."""

    def __init__(
        self,
        data: points_lib.Points,
        design: Design | None = None,
        knobs: Knobs | None = None,
        seed: int = 0,
    ):
        self.data, self.design, self.seed = data, design or Design(), seed
        self.knobs: Knobs = knobs or Knobs()
        with _init_lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = mlp([self.design.Nz, self.design.width, self.design.width, 2])
            if self.design.bounded:
                self.G.append(nn.Tanh())
            self.D = AutoEncoder(self.design)
            if self.design.spread > 0:
                self._spread_G(self.design.spread)
        self.opt_G = torch.optim.Adam(
            self.G.parameters(), self.knobs.lr_G, betas=(0.5, 0.999), foreach=True
        )
        self.opt_D = torch.optim.Adam(
            self.D.parameters(), self.knobs.lr_D, betas=(0.5, 0.999), foreach=True
        )
        self.rng = torch.Generator().manual_seed(seed)
        self.k_t, self.t = 0.0, 0
        self.L_x, self.L_G = float("nan"), float("nan")  # the last measured, for update_k
        self.history: list[dict[str, float]] = []
        self._fixed_cache: dict[tuple, tuple[Tensor, ...]] = {}

    @torch.no_grad()
    def _spread_G(self, std: float) -> None:
        """Start G's points spread over the plane, not in a dot at the origin: a dot falls
        into one basin of L(v) as a whole, and that is mode collapse from step 0."""
        last = [m for m in self.G if isinstance(m, nn.Linear)][-1]
        p = self.G(torch.rand(1024, self.design.Nz) * 2 - 1)
        last.weight.mul_(std / p.std(0).mean().clamp_min(1e-6))
        last.bias.zero_()

    # --------------------------------------------------------------- sampling
    def z(self, n: int) -> Tensor:
        return torch.rand(n, self.design.Nz, generator=self.rng) * 2 - 1

    def x(self, n: int) -> Tensor:
        """Real points, normalised."""
        return self.data.normalise(self.data.sample(n, self.rng))

    @torch.inference_mode()
    def generate(self, n: int, seed: int | None = None) -> Tensor:
        """n generated points in data coordinates; a fixed `seed` draws the same z each time."""
        if seed is None:
            z = self.z(n)
        else:
            z = torch.rand(n, self.design.Nz, generator=torch.Generator().manual_seed(seed))
            z = z * 2 - 1
        return self.data.denormalise(self.G(z))

    # --------------------------------------------------------------- the three updates
    def _set_lrs(self) -> None:
        for opt, lr in ((self.opt_D, self.knobs.lr_D), (self.opt_G, self.knobs.lr_G)):
            for group in opt.param_groups:
                group["lr"] = lr

    def update_D(self) -> None:
        """Update D: L_D = L(x) - k_t * L(G(z_D)), G fixed."""
        self._set_lrs()
        eta, B = self.knobs.eta, self.design.batch
        with torch.no_grad():
            fake = self.G(self.z(B))
        L_x = self.D.loss(self.x(B), eta).mean()
        L_fake = self.D.loss(fake, eta).mean()
        L_D = discriminator_loss(L_x, L_fake, self.k_t)
        self.opt_D.zero_grad(set_to_none=True)
        L_D.backward()
        self.opt_D.step()
        self.L_x = float(L_x.detach())

    def update_G(self) -> None:
        """Update G: L_G = L(G(z_G)) with a fresh z, D fixed (only G's optimiser steps)."""
        self._set_lrs()
        # D's weights take no gradient from this pass (it would never be used): autograd then
        # skips their half of D's backward; the gradient that reaches G is the same.
        D_params = self.opt_D.param_groups[0]["params"]  # D.parameters(), without the walk
        for p in D_params:
            p.requires_grad_(False)
        try:
            L_G = self.D.loss(self.G(self.z(self.design.batch)), self.knobs.eta).mean()
            self.opt_G.zero_grad(set_to_none=True)
            L_G.backward()
        finally:
            for p in D_params:
                p.requires_grad_(True)
        self.opt_G.step()
        self.L_G = float(L_G.detach())

    def update_k(self) -> None:
        """Update k_t from the last L(x) and L(G(z)); measured afresh if there are none."""
        if self.L_x != self.L_x or self.L_G != self.L_G:  # NaN: no update has run yet
            self.measure()
        k = self.knobs
        self.k_t = float(update_k(self.k_t, self.L_x, self.L_G, k.gamma, k.lambda_k, k.clip_k))

    @torch.no_grad()
    def measure(self) -> None:
        """L(x) and L(G(z)) on fresh batches, changing no weights."""
        B, eta = self.design.batch, self.knobs.eta
        self.L_x = float(self.D.loss(self.x(B), eta).mean())
        self.L_G = float(self.D.loss(self.G(self.z(B)), eta).mean())

    def step(self, n: int = 1) -> None:
        """n full rounds: D (d_steps times), G, k_t; one history record each."""
        for _ in range(n):
            warmup = self.design.warmup if self.t == 0 else 0
            for _ in range(self.design.d_steps + warmup):
                self.update_D()
            self.update_G()
            self.update_k()
            self.t += 1
            self.record()

    def record(self) -> None:
        gamma = self.knobs.gamma
        self.history.append(
            {
                "step": self.t,
                "k_t": self.k_t,
                "L_x": self.L_x,
                "L_G": self.L_G,
                "M_global": float(M_global(self.L_x, self.L_G, gamma)),
                "balance": gamma * self.L_x - self.L_G,
            }
        )

    # --------------------------------------------------------------- what the page draws
    def coverage(self, n: int = points_lib.COVERAGE_SAMPLES, seed: int = 1234):
        return points_lib.coverage(self.generate(n, seed=seed), self.data)

    def _fixed(self, key: tuple, make):
        """What the page asks for every frame and that never changes for this model (the map's
        grid of points as D sees them, the histograms' real points): made once, kept. Made
        with the same operations as before, so the numbers do not change."""
        if key not in self._fixed_cache:
            if len(self._fixed_cache) > 8:  # a page asks for a handful of keys; stay bounded
                self._fixed_cache.clear()
            self._fixed_cache[key] = make()
        return self._fixed_cache[key]

    @torch.inference_mode()
    def loss_map(self, lo: tuple[float, float], hi: tuple[float, float], cells: int = 40):
        """L(v) on a cells x cells grid over the box [lo, hi] (data coordinates): (cells,
        cells) with rows along y, and the axes. With packs, L of the pack whose points all sit
        at v (`AutoEncoder.view_alone`): what D makes of a G collapsed there."""

        def grid():
            xs = torch.linspace(lo[0], hi[0], cells)
            ys = torch.linspace(lo[1], hi[1], cells)
            p = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
            return xs, ys, self.D.view_alone(self.data.normalise(p))

        xs, ys, v = self._fixed(("map", tuple(lo), tuple(hi), cells), grid)
        L = ae_loss(v, self.D(v), self.knobs.eta)  # self.D.loss, less drawing the same grid
        return L.reshape(cells, cells), xs, ys

    def pushes(self, n: int = 64, seed: int = 99) -> tuple[Tensor, Tensor]:
        """Generated points (data coordinates) and -dL_G/dG(z) at each, in data units: where
        G's update pushes its points. With packs, n is rounded up to whole packs, each point
        is pushed as a member of its pack, and the first n are returned."""
        m = self.design.pack
        total = -(-n // m) * m
        z = torch.rand(total, self.design.Nz, generator=torch.Generator().manual_seed(seed))
        z = z * 2 - 1
        with torch.no_grad():
            p = self.G(z)
        p.requires_grad_(True)
        L = self.D.loss(p, self.knobs.eta).sum()
        (grad,) = torch.autograd.grad(L, p)
        return self.data.denormalise(p.detach()[:n]), -grad[:n] * self.data.scale

    @torch.inference_mode()
    def reconstructions(self, p: Tensor) -> Tensor | None:
        """D(v) of points (data coordinates) when D reconstructs points directly, else None."""
        if self.D.draw is not None:
            return None
        return self.data.denormalise(self.D(self.data.normalise(p)))

    @torch.inference_mode()
    def losses(self, n: int = 512, seed: int = 7) -> tuple[Tensor, Tensor]:
        """L(x) and L(G(z)) per image D sees (per point, or per pack of points), n of each,
        for histograms: the same x and z every time."""

        def draw():
            g = torch.Generator().manual_seed(seed)
            x = self.data.normalise(self.data.sample(n * self.design.pack, g))
            z = torch.rand(n * self.design.pack, self.design.Nz, generator=g) * 2 - 1
            return self.D.view(x), z

        v, z = self._fixed(("losses", n, seed), draw)
        eta = self.knobs.eta
        return ae_loss(v, self.D(v), eta), self.D.loss(self.G(z), eta)

    def with_knobs(self, **changes) -> None:
        self.knobs = dataclasses.replace(self.knobs, **changes)

"""One BEGAN training step, as the paper writes it: update D, update G, update k_t.

`TrainStep` owns what a step changes (both optimizers, k_t, the noise generator) and is the
one code path that the training loop, the benchmark and the tests run.

The step asks nothing of the host. What it carries from step to step stays on the training
device: k_t is one tensor updated in place, the losses come back as tensors (the loop sums
them there and reads them once per `log_every` steps), and on CUDA the learning rate is a
device tensor inside both optimizers (the fused Adam kernel, or Adam with `capturable=True`,
reads it there), the augmentation is drawn on the device (augment.py) and G_ema's weights can
come from device tensors (`use_tensor_ema`). So a GPU never waits for the host within a step,
and the same code runs captured as one CUDA graph (graphed.py). A call is two halves: `begin`,
the host's part (the augmentation's seed, G_ema's weights for this step: no device values
read), and `run`, the device's part, which is what the graph captures.

On the CPU the host is the device: the learning rate stays a float in the optimizers and the
augmentation keeps its numpy draws, so a CPU step computes what it always did, bit for bit
(tests/test_sync_free.py holds it to the step as it was written before).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel as DDP

from ..config import ConfigError, TrainConfig
from ..equilibrium import M_global, ae_loss, discriminator_loss, update_k
from ..nn.elu import set_fast as set_fast_elu
from ..nn.ema import Averages, beta, half_lives
from ..nn.model import BEGAN
from . import fast_path
from .augment import Augment
from .distributed import Dist


class TrainStep:
    """Call it with a batch of real images x; it returns the step's losses (averaged over ranks
    in a distributed run), all as device tensors: reading them is the caller's host sync."""

    def __init__(
        self,
        model: BEGAN,
        cfg: TrainConfig,
        device: torch.device,
        d: Dist | None = None,
        augment: Augment | None = None,
        *,
        draws: str | None = None,
    ) -> None:
        """`draws` overrides where the augmentation is drawn ("host" or "device"; default: the
        device's choice, fast_path.py), for tests that run the CUDA mode on the CPU."""
        self.model, self.cfg, self.device = model, cfg, device
        self.augment = augment  # T, when D sees augmented images (augment.py)
        self.d = d = d or Dist()
        # The fast path: each None ("auto") option of cfg decided for this device.
        self.path = path = fast_path.resolve(cfg, device, d.world)
        if path.graph and d.active:
            raise ConfigError(
                "--graph captures one process's step; a distributed run stays eager (DDP's "
                "gradient all-reduce is driven from the host, bucket by bucket). Leave --graph "
                "out, or train on one GPU."
            )
        self.amp, self.channels_last, self.fuse_D = path.amp, path.channels_last, path.fuse_D
        if augment is not None and (draws or augment.draws is None):
            augment.draws = draws or path.draws
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        set_fast_elu(model, path.fast_elu)
        betas = (cfg.beta1, cfg.beta2)
        # On CUDA the learning rate is a device tensor that both optimizers read where they
        # run (float32: the fused kernel's type), so that neither a new rate nor a captured
        # graph needs the host; capturable=True is what lets Adam keep its step count there.
        self.lr_t = (
            torch.tensor(cfg.lr, dtype=torch.float32, device=device)
            if device.type == "cuda"
            else None
        )
        adam: dict = {"lr": cfg.lr if self.lr_t is None else self.lr_t, "betas": betas}
        adam.update({"fused": True} if path.fused_adam else {})
        adam.update({"capturable": True} if self.lr_t is not None else {})
        self.opt_G = torch.optim.Adam(model.G.parameters(), **adam)
        self.opt_D = torch.optim.Adam(model.D.parameters(), **adam)
        self._k_t = torch.tensor(cfg.k_0, device=device)
        # (no generator on the meta device, where the benchmark counts FLOPs)
        self.z_gen = (
            torch.Generator(device).manual_seed(cfg.seed + 1_000_003 * d.rank)
            if device.type != "meta"
            else None
        )
        # In a distributed run DDP averages the replicas' gradients; it wraps each network
        # only where its weights are updated (D in its step, G in its own).
        self.G_train: torch.nn.Module = DDP(model.G) if d.active else model.G
        self.D_train: torch.nn.Module = DDP(model.D) if d.active else model.D
        if path.compile:
            self.G_train = torch.compile(self.G_train)  # type: ignore[assignment]
            self.D_train = torch.compile(self.D_train)  # type: ignore[assignment]
        # G_ema and any swept averages (ema.py), after the layout change so they share it.
        self.averages = Averages(model, cfg) if half_lives(cfg) else None
        # G_ema's weights 1 - beta, one device tensor per average, filled by `begin`; None:
        # floats, computed in `run` (ema.py's update). A graph needs the tensors.
        self.ema_weights: list[Tensor] | None = None
        # autocast's cache of cast weights lives between a capture's casts and its replays
        # otherwise; a graph turns it off (graphed.py).
        self.autocast_cache = True

    @property
    def k_t(self) -> Tensor:
        """k_t, one device tensor for the whole run: the step updates it in place, so that a
        captured graph reads and writes the same memory at every replay."""
        return self._k_t

    @k_t.setter
    def k_t(self, value: float | Tensor) -> None:
        self._k_t.copy_(torch.as_tensor(value, dtype=self._k_t.dtype))

    def set_lr(self, lr: float | Tensor) -> None:
        """Both optimizers' learning rate: copied into the device tensor on CUDA (no host
        read), a float elsewhere (on the CPU, reading a CPU tensor waits for nothing)."""
        groups = (*self.opt_G.param_groups, *self.opt_D.param_groups)
        if self.lr_t is None:
            for g in groups:
                g["lr"] = float(lr)
            return
        if isinstance(lr, Tensor):
            self.lr_t.copy_(lr)
        else:
            self.lr_t.fill_(lr)
        for g in groups:  # (a loaded optimizer state brings its own lr: the shared one again)
            if g["lr"] is not self.lr_t:
                g["lr"] = self.lr_t

    def z(self, batch: int) -> Tensor:
        return (
            torch.rand(batch, self.model.config.Nz, generator=self.z_gen, device=self.device) * 2
            - 1
        )

    def use_tensor_ema(self) -> None:
        """Take G_ema's weights from device tensors that `begin` fills, not from floats in
        `run` (the same numbers: ema.py's beta, stored in float32 as the float is used)."""
        if self.averages is not None and self.ema_weights is None:
            self.ema_weights = [torch.zeros((), device=self.device) for _ in self.averages.nets]

    def __call__(self, x: Tensor, t: int = 0) -> dict[str, Tensor]:
        """One step on the real batch x; `t`, the step's number, keys the augmentation's draws."""
        self.begin(t)
        return self.run(x, t)

    def begin(self, t: int) -> None:
        """The host's part of step t, before the device's: it reads no device value."""
        if self.augment is not None:
            self.augment.begin(t, self.device)
        if self.ema_weights is not None and self.averages is not None:
            seen = (t + 1) * self.cfg.batch_size
            a = self.averages
            for w, kimg in zip(self.ema_weights, a.nets, strict=True):
                w.fill_(1.0 - beta(a.batch, kimg, seen, a.rampup))

    def run(self, x: Tensor, t: int = 0) -> dict[str, Tensor]:
        """The device's part of step t (after `begin(t)`): what a CUDA graph captures."""
        cfg, B = self.cfg, len(x)
        aug = self.augment

        def T(use: str):  # v -> T(v), drawn for this step and use; None without augmentation
            return (lambda v: aug(v, t, use)) if aug else None

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # bf16 autocast covers the networks; ae_loss and everything after it run in float32.
        amp = (
            torch.autocast(
                self.device.type, dtype=torch.bfloat16, cache_enabled=self.autocast_cache
            )
            if self.amp
            else nullcontext()
        )
        with amp:
            # Update D: L_D = L(x) - k_t * L(G(z_D)).
            L_x, L_D = update_D(
                self.model,
                self.opt_D,
                x,
                self.z(B),
                self._k_t,
                cfg.eta,
                D=self.D_train,
                fuse=self.fuse_D,
                T_x=T("real"),
                T_fake=T("fake_D"),
            )
            # Update G: L_G = L(G(z_G)), with a fresh draw of z.
            L_G = update_G(
                self.model, self.opt_G, self.z(B), cfg.eta, G=self.G_train, T=T("fake_G")
            )
        # Update G_ema: every rank holds the same G, so every rank's average is the same.
        if self.averages is not None:
            if self.ema_weights is None:
                self.averages.update(images_seen=(t + 1) * cfg.batch_size)
            else:
                self._update_averages()
        # Update k_t: one equilibrium over all ranks, so the losses are averaged first.
        local = torch.stack([L_x, L_G, L_D])
        L_x, L_G, L_D = self.d.mean(local)
        self._k_t.copy_(update_k(self._k_t, L_x, L_G, cfg.gamma, cfg.lambda_k))
        return {
            "L_x": L_x,
            "L_G": L_G,
            "L_D": L_D,
            "M_global": M_global(L_x, L_G, cfg.gamma),
            "local": local,
        }

    @torch.no_grad()
    def _update_averages(self) -> None:
        """ema.py's update with the weights from device tensors (lerp by a tensor weight: the
        float update's numbers, bit for bit)."""
        assert self.averages is not None and self.ema_weights is not None
        G = [*self.model.G.parameters(), *self.model.G.buffers()]
        for w, net in zip(self.ema_weights, self.averages.nets.values(), strict=True):
            avg = [*net.parameters(), *net.buffers()]
            torch._foreach_lerp_(avg, G, [w.expand_as(a) for a in avg])


def update_D(
    model: BEGAN,
    opt_D: torch.optim.Optimizer,
    x: torch.Tensor,
    z_D: torch.Tensor,
    k_t: float | torch.Tensor,
    eta: int = 1,
    D: torch.nn.Module | None = None,
    fuse: bool = True,
    T_x: Callable[[Tensor], Tensor] | None = None,
    T_fake: Callable[[Tensor], Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on D's weights only: L_D = L(x) - k_t * L(G(z_D)). Returns (L(x), L_D), detached.

    `D` is the module to run (a DDP wrapper of `model.D` in a distributed run). With `fuse`,
    real and fake images go through D as one batch: one forward, one backward, one gradient
    all-reduce; without, as two (the same loss and gradient, up to rounding). With
    augmentation, `T_x` and `T_fake` transform what D sees, and the losses are L_T (augment.py).
    """
    D = model.D if D is None else D  # (a compiled module has no truth value)
    with torch.no_grad():  # G is a constant here: no graph through it, no gradient into it
        fake = model.G(z_D)
    if T_x is not None and T_fake is not None:
        x, fake = T_x(x), T_fake(fake)
    if fuse:
        v = torch.cat([x, fake])
        L_v = ae_loss(v, D(v), eta)
        L_x, L_fake = L_v[: len(x)].mean(), L_v[len(x) :].mean()
    else:
        L_x, L_fake = ae_loss(x, D(x), eta).mean(), ae_loss(fake, D(fake), eta).mean()
    L_D = discriminator_loss(L_x, L_fake, k_t)
    opt_D.zero_grad(set_to_none=True)
    L_D.backward()
    opt_D.step()
    return L_x.detach(), L_D.detach()


def update_G(
    model: BEGAN,
    opt_G: torch.optim.Optimizer,
    z_G: torch.Tensor,
    eta: int = 1,
    G: torch.nn.Module | None = None,
    T: Callable[[Tensor], Tensor] | None = None,
) -> torch.Tensor:
    """One step on G's weights only: L_G = L(G(z_G)), through a D that takes no gradient; with
    augmentation, L_T(G(z_G)), G's gradient flowing back through T."""
    G, D = (model.G if G is None else G), model.D
    D.requires_grad_(False)
    try:
        fake = G(z_G)
        if T is not None:
            fake = T(fake)
        L_G = ae_loss(fake, D(fake), eta).mean()
        opt_G.zero_grad(set_to_none=True)
        L_G.backward()
        opt_G.step()
    finally:
        D.requires_grad_(True)
    return L_G.detach()

"""The BEGAN training loop: one generator of metric records, consumed by the CLI and the dashboard.

    for record in train(config, "runs/demo"):
        print(record["step"], record["k_t"], record["M_global"])

The loop writes the run directory (runs.py) as it goes; resuming continues bit-for-bit where
the last checkpoint left off: weights, both Adam states, k_t, learning rate and RNG states.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ConfigError, RunConfig
from .data import ImageDataset, open_dataset
from .equilibrium import M_global, ae_loss, balance, discriminator_loss, update_k
from .hub import CheckpointError, describe_mismatch, load, save_pretrained
from .images import save_grid
from .model import BEGAN
from .model_card import model_card
from .runs import RunDir
from .schedule import PlateauHalving

STATE_FILE = "training_state.pt"
SAMPLE_GRID = 64  # images in every sample grid, from one fixed z


class NonFiniteLossError(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but CUDA is not available; use --device cpu."
        )
    return device


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


class Batches:
    """Batch number t -> image indices, a pure function of (seed, t).

    Each epoch is a fresh permutation seeded by (seed, epoch), so a resumed run draws exactly
    the batches the uninterrupted run would have, with no sampler state to save.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int) -> None:
        if len(dataset) < batch_size:
            raise ConfigError(
                f"the dataset has {len(dataset)} images, fewer than the batch size {batch_size}; "
                "add images or lower --batch-size."
            )
        self.dataset, self.B, self.seed = dataset, batch_size, seed
        self.per_epoch = len(dataset) // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, t: int) -> torch.Tensor:
        epoch, i = divmod(t, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.dataset), generator=g)
        return self.dataset.batch(self._perm[i * self.B : (i + 1) * self.B])


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    dataset: ImageDataset | None = None,
    meta: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Train BEGAN, yielding one metric record every `log_every` steps.

    With `resume=True`, `run_dir` must hold a checkpoint; `config` may only differ from the
    stored one in `train.steps` (to train longer) and the logging intervals.
    Closing the generator early (or a STOP file in the run directory) saves a checkpoint and
    marks the run "stopped"; any error marks it "failed" with the message, and re-raises.
    """
    run = RunDir(run_dir)
    cfg_m, cfg_t = config.model, config.train
    device = resolve_device(cfg_t.device)
    if cfg_t.deterministic:
        torch.use_deterministic_algorithms(True)

    checkpoint = _check_resume(run, config) if resume else None
    if not resume and run.latest_checkpoint() is not None:
        raise ConfigError(
            f"{run.path} already holds a run with checkpoints; resume it with --resume "
            f"{run.path}, or choose another --out."
        )
    if dataset is None:
        dataset = open_dataset(
            config.data.source,
            cfg_m.resolution,
            cfg_m.channels,
            celeba_crop=config.data.celeba_crop,
            max_images=config.data.max_images,
        )
    if (dataset.resolution, dataset.channels) != (cfg_m.resolution, cfg_m.channels):
        raise ConfigError("the dataset's resolution or channels differ from the model's")
    batches = Batches(dataset, cfg_t.batch_size, cfg_t.seed)

    torch.manual_seed(cfg_t.seed)
    random.seed(cfg_t.seed)
    model = BEGAN(cfg_m).to(device)
    opt_G = torch.optim.Adam(model.G.parameters(), lr=cfg_t.lr, betas=(cfg_t.beta1, cfg_t.beta2))
    opt_D = torch.optim.Adam(model.D.parameters(), lr=cfg_t.lr, betas=(cfg_t.beta1, cfg_t.beta2))
    z_gen = torch.Generator(device).manual_seed(cfg_t.seed)
    # One fixed z for every sample grid, so grids at different steps are comparable.
    z_fixed = torch.rand(
        SAMPLE_GRID, cfg_m.Nz, generator=torch.Generator().manual_seed(cfg_t.seed + 1)
    )
    z_fixed = (z_fixed * 2 - 1).to(device)
    plateau = PlateauHalving(cfg_t.lr_window, cfg_t.lr_tolerance, cfg_t.lr_min)
    k_t = torch.tensor(cfg_t.k_0, device=device)
    lr, step, wall_before = cfg_t.lr, 0, 0.0

    if checkpoint is not None:
        trained = load(checkpoint, device=device, expect=cfg_m)
        model.load_state_dict(trained.state_dict())
        state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        plateau.load_state_dict(state["plateau"])
        k_t = torch.tensor(state["k_t"], device=device)
        lr, step, wall_before = state["lr"], state["step"], state["wall_time"]
        torch.set_rng_state(state["rng_torch"])
        z_gen.set_state(state["rng_z"].to(z_gen.get_state().device))
        random.setstate(_tuple(state["rng_python"]))
        run.truncate_metrics(step)
    else:
        run.create()
        meta = {
            "command": " ".join(sys.argv) if meta is None else meta.get("command", ""),
            "created": time.time(),
            "began_studio": __version__,
            "torch": torch.__version__,
            "hardware": hardware_name(device),
            "dataset": dataset.description,
            "images": len(dataset),
            "skipped_files": dataset.skipped,
            **(meta or {}),
        }
        run.write_config(config, meta)
        if not run.samples():
            save_grid(model.generate(z_fixed), run.sample_path(0), nrow=8)
    run.clear_stop()

    def save_checkpoint() -> Path:
        def write(tmp: Path) -> None:
            card = model_card(
                config, step=step, wall_time=wall, hardware=hardware_name(device), metrics=last
            )
            save_pretrained(model, tmp, card=card)
            torch.save(
                {
                    "step": step,
                    "k_t": float(k_t),
                    "lr": lr,
                    "wall_time": wall,
                    "opt_G": opt_G.state_dict(),
                    "opt_D": opt_D.state_dict(),
                    "plateau": plateau.state_dict(),
                    "rng_torch": torch.get_rng_state(),
                    "rng_z": z_gen.get_state().cpu(),
                    "rng_python": _lists(random.getstate()),
                },
                tmp / STATE_FILE,
            )

        return run.write_checkpoint(step, write, keep=cfg_t.keep_checkpoints)

    def status(state: str, **extra: Any) -> None:
        run.write_status(state, step=step, steps=cfg_t.steps, k_t=float(k_t), lr=lr, **extra)

    sums = _Sums(device)
    last: dict[str, Any] = {}
    t_start, t_log, steps_at_log = time.perf_counter(), time.perf_counter(), step
    wall = wall_before
    status("running")
    outcome = "failed"
    try:
        while step < cfg_t.steps:
            x = batches(step).to(device, non_blocking=True)
            model.set_carry(_carry(step, cfg_t.carry_steps, cfg_m.vanishing_residual))
            for g in (*opt_G.param_groups, *opt_D.param_groups):
                g["lr"] = lr

            # Update D: L_D = L(x) - k_t * L(G(z_D)).
            z_D = torch.rand(cfg_t.batch_size, cfg_m.Nz, generator=z_gen, device=device) * 2 - 1
            L_x, L_D = update_D(model, opt_D, x, z_D, k_t, cfg_t.eta)
            # Update G: L_G = L(G(z_G)), with a fresh draw of z.
            z_G = torch.rand(cfg_t.batch_size, cfg_m.Nz, generator=z_gen, device=device) * 2 - 1
            L_G = update_G(model, opt_G, z_G, cfg_t.eta)

            # Update k_t: the proportional controller, and the convergence measure.
            M = M_global(L_x, L_G, cfg_t.gamma)
            sums.add(
                L_x=L_x,
                L_G=L_G,
                L_D=L_D.detach(),
                M_global=M,
                balance=balance(L_x, L_G, cfg_t.gamma),
            )
            k_t = update_k(k_t, L_x, L_G, cfg_t.gamma, cfg_t.lambda_k)
            lr = plateau.observe(M, lr)
            step += 1

            if step % cfg_t.log_every == 0 or step == cfg_t.steps:
                now = time.perf_counter()
                wall = wall_before + now - t_start
                means = sums.pop()
                if not all(math.isfinite(v) for v in means.values()):
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step} ({means}); the run stopped, and its last "
                        "good checkpoint is kept. Try a lower --lr or check the data."
                    )
                rate = (step - steps_at_log) / max(now - t_log, 1e-9)
                last = {
                    "step": step,
                    "k_t": float(k_t),
                    **means,
                    "lr": lr,
                    "images_per_s": rate * cfg_t.batch_size,
                    "steps_per_s": rate,
                    "eta_s": (cfg_t.steps - step) / max(rate, 1e-9),
                    "wall_time": wall,
                }
                t_log, steps_at_log = now, step
                run.append_metrics(last)
                yield last
            if step % cfg_t.sample_every == 0 or step == cfg_t.steps:
                save_grid(model.generate(z_fixed), run.sample_path(step), nrow=8)
            if step % cfg_t.checkpoint_every == 0 or step == cfg_t.steps:
                _check_finite(model, step)
                save_checkpoint()
                status("running")
            if run.stop_requested():
                break
        outcome = "finished" if step >= cfg_t.steps else "stopped"
    except GeneratorExit:
        outcome = "stopped"
    except BaseException as e:
        kind = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
        status("failed", error=f"{kind}: {e}", traceback=traceback.format_exc()[-4000:])
        raise
    finally:
        if outcome == "stopped":
            wall = wall_before + time.perf_counter() - t_start
            if run.latest_checkpoint() is None or _ckpt_step(run) != step:
                _check_finite(model, step)
                save_checkpoint()
            run.clear_stop()
        if outcome != "failed":
            status(outcome, metrics=last)


def update_D(
    model: BEGAN,
    opt_D: torch.optim.Optimizer,
    x: torch.Tensor,
    z_D: torch.Tensor,
    k_t: float | torch.Tensor,
    eta: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on D's weights only: L_D = L(x) - k_t * L(G(z_D)). Returns (L(x), L_D), detached."""
    G, D = model.G, model.D
    with torch.no_grad():  # G is a constant here: no graph through it, no gradient into it
        fake = G(z_D)
    L_x = ae_loss(x, D(x), eta).mean()
    L_D = discriminator_loss(L_x, ae_loss(fake, D(fake), eta).mean(), k_t)
    opt_D.zero_grad(set_to_none=True)
    L_D.backward()
    opt_D.step()
    return L_x.detach(), L_D.detach()


def update_G(
    model: BEGAN, opt_G: torch.optim.Optimizer, z_G: torch.Tensor, eta: int = 1
) -> torch.Tensor:
    """One step on G's weights only: L_G = L(G(z_G)), through a D that takes no gradient."""
    G, D = model.G, model.D
    D.requires_grad_(False)
    try:
        fake = G(z_G)
        L_G = ae_loss(fake, D(fake), eta).mean()
        opt_G.zero_grad(set_to_none=True)
        L_G.backward()
        opt_G.step()
    finally:
        D.requires_grad_(True)
    return L_G.detach()


class _Sums:
    """Per-step values summed on the device; read (one host sync) once per logging interval."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.totals, self.count = device, {}, 0

    def add(self, **values: torch.Tensor) -> None:
        for k, v in values.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        self.count += 1

    def pop(self) -> dict[str, float]:
        keys = list(self.totals)
        stacked = torch.stack([torch.as_tensor(self.totals[k], device=self.device) for k in keys])
        means = (stacked.double() / max(self.count, 1)).tolist()
        self.totals, self.count = {}, 0
        return dict(zip(keys, means, strict=True))


def _carry(step: int, carry_steps: int, enabled: bool) -> float:
    if not enabled or carry_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / carry_steps)


def _check_finite(model: BEGAN, step: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteLossError(
                f"parameter {name} became non-finite by step {step}; the last good checkpoint is "
                "kept. Try a lower --lr."
            )


def _ckpt_step(run: RunDir) -> int | None:
    found = run.checkpoints()
    return found[-1][0] if found else None


def _check_resume(run: RunDir, config: RunConfig) -> Path:
    if not run.exists():
        raise ConfigError(f"cannot resume {run.path}: it is not a run directory (no config.json).")
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        raise ConfigError(f"cannot resume {run.path}: it has no checkpoint yet; start it afresh.")
    stored = run.read_config()
    if stored.model != config.model:
        raise CheckpointError(
            f"cannot resume {run.path} with another model: {describe_mismatch(config.model, stored.model)}."
        )
    frozen = ("batch_size", "gamma", "lambda_k", "eta", "beta1", "beta2", "seed", "lr_window")
    changed = [k for k in frozen if getattr(stored.train, k) != getattr(config.train, k)]
    if changed or stored.data != config.data:
        what = ", ".join(changed + (["data"] if stored.data != config.data else []))
        raise ConfigError(
            f"cannot resume {run.path} with different {what}: an exact resume needs the stored "
            "values; resume without those options, or start a new run."
        )
    return checkpoint


def _lists(x: Any) -> Any:
    return [_lists(v) for v in x] if isinstance(x, tuple) else x


def _tuple(x: Any) -> Any:
    return tuple(_tuple(v) for v in x) if isinstance(x, list) else x

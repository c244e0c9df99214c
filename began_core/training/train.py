"""The BEGAN training loop: one generator of metric records, consumed by the CLI and the dashboard.

    for record in train(config, "runs/demo"):
        print(record["step"], record["k_t"], record["M_global"])

The loop writes the run directory (runs.py) as it goes; resuming continues bit-for-bit where
the last checkpoint left off: weights, both Adam states, k_t, learning rate and RNG states.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoints import generators
from ..checkpoints.checkpoint_checks import check_config
from ..checkpoints.hub import CheckpointError, describe_mismatch, load, save_pretrained
from ..checkpoints.model_card import model_card, training_record
from ..config import ConfigError, RunConfig, parse_policy
from ..data.dataset import ImageDataset, stopping
from ..data.images import save_grid
from ..data.sources import open_dataset
from ..equilibrium import balance
from ..faults import write_error
from ..nn import ema
from ..nn.model import BEGAN
from ..runs.run_dir import RunDir
from ..runs.run_lock import RunLock
from . import distributed, heldout, training_state
from .augment import Augment
from .batches import Batches
from .distributed import Dist, hardware_name
from .graphed import GraphedStep
from .schedule import PlateauHalving
from .scoring import HeldoutScore
from .step import TrainStep

SAMPLE_GRID = 64  # images in every sample grid, from one fixed z
MAX_BATCH = 4096  # images per step, at most: far beyond any BEGAN recipe, short of a memory blow-up


class NonFiniteLossError(RuntimeError):
    pass


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    dataset: ImageDataset | None = None,
    meta: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Train BEGAN, yielding one metric record every `log_every` steps.

    With `resume=True`, `run_dir` must hold a checkpoint; `config` may only differ from the
    stored one in `train.steps` (to train longer) and the logging intervals.
    Closing the generator early, a STOP file in the run directory, or `should_stop()` turning
    True saves a checkpoint and marks the run "stopped"; any error marks it "failed" with the
    message, and re-raises. Launched by torchrun, it trains with DistributedDataParallel: see
    distributed.py.
    """
    run = RunDir(run_dir)
    started = time.time()  # a STOP older than this is stale; a newer one is honoured
    cfg_m, cfg_t = config.model, config.train
    d, device = distributed.init(cfg_t.device)
    if cfg_t.deterministic:
        torch.use_deterministic_algorithms(True)

    # Bounded before anything is allocated or decoded: a config.json is untrusted input.
    _check_sizes(config, str(run.config_path) if resume else "the configuration")
    lock = RunLock(run.path)  # one writer per run (run_lock.py), rank 0 being the writer
    if resume and d.main and run.exists():
        lock.acquire()  # before the checkpoint is chosen, so that nobody writes a newer one
    checkpoint = _check_resume(run, config) if resume else None
    if not resume and run.latest_checkpoint() is not None:
        raise ConfigError(
            f"{run.path} already holds a run with checkpoints; resume it with --resume "
            f"{run.path}, or choose another --out."
        )
    if dataset is None:
        for turn in (True, False):  # rank 0 first, so that it alone fills the decode cache
            if d.main == turn:
                with stopping(should_stop):  # a Ctrl-C while decoding stops it at once
                    dataset = open_dataset(
                        config.data.source,
                        cfg_m.resolution,
                        cfg_m.channels,
                        celeba_crop=config.data.celeba_crop,
                        max_images=config.data.max_images,
                    )
            d.barrier()
    if (dataset.resolution, dataset.channels) != (cfg_m.resolution, cfg_m.channels):
        raise ConfigError("the dataset's resolution or channels differ from the model's")
    # What D trains on, and what it never sees.
    images, heldout_set = heldout.split_dataset(dataset, config.data.heldout, cfg_t.seed)
    batches = Batches(images, cfg_t.batch_size, cfg_t.seed, d, device, config.data.hflip)

    torch.manual_seed(cfg_t.seed)
    random.seed(cfg_t.seed)
    model = BEGAN(cfg_m).to(device)
    policy = parse_policy(cfg_t.augment)
    p = float(cfg_t.augment_p)
    augment = Augment(policy, p, cfg_t.seed, rank=d.rank, world=d.world) if policy else None
    step_fn = TrainStep(model, cfg_t, device, d, augment)
    run_step = GraphedStep(step_fn) if step_fn.path.graph else step_fn  # graphed.py
    memorisation = (
        heldout.Memorisation(images, heldout_set, device, cfg_t.eta) if heldout_set else None
    )
    # G is scored by rank 0 alone, which decides "best" for all (ranks never compare floats).
    scoring = bool(cfg_t.score_every and heldout_set is not None)
    scorer = None
    if scoring and d.main:
        scorer = HeldoutScore.of_heldout(heldout_set, config.data.source, cfg_t.seed, cfg_m.Nz)
    best: dict[str, Any] = {}  # {"step", "score", "generator"} of the best checkpoint so far
    pending: dict[str, Any] = {}  # measurements made between two records, for the next one
    opt_G, opt_D, z_gen = step_fn.opt_G, step_fn.opt_D, step_fn.z_gen
    # One fixed z for every sample grid, so grids at different steps are comparable.
    z_fixed = torch.rand(
        SAMPLE_GRID, cfg_m.Nz, generator=torch.Generator().manual_seed(cfg_t.seed + 1)
    )
    z_fixed = (z_fixed * 2 - 1).to(device)

    def sample_grid(at: int, which: str) -> None:
        path = run.sample_path(at, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(generators.select(model, which).generate(z_fixed), path, nrow=8)

    plateau = PlateauHalving(cfg_t.lr_window, cfg_t.lr_tolerance, cfg_t.lr_min)
    # The learning rate is a tensor where the step runs (CUDA), read only to log and save.
    lr_device = device if device.type == "cuda" else torch.device("cpu")

    def as_lr(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64, device=lr_device)

    lr, step, wall_before = as_lr(cfg_t.lr), 0, 0.0
    saved_at = -1  # step of the newest checkpoint; every rank tracks it the same way

    if checkpoint is not None:
        _restore_weights(model, step_fn.averages, checkpoint, device, d.main)
        state = training_state.load(checkpoint)
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        plateau.load_state_dict(state["plateau"])
        best = dict(state.get("best") or {})
        step_fn.k_t = torch.tensor(state["k_t"], device=device)
        lr, step, wall_before = as_lr(state["lr"]), state["step"], state["wall_time"]
        saved_at = step
        if not training_state.restore_rng(state, z_gen, d.rank, d.world) and d.main:
            print(
                f"note: resumed with {d.world} process(es) where {len(state['rng_z'])} saved the "
                "checkpoint; weights, optimizers, k_t and lr are exact, the noise draws re-seeded.",
                file=sys.stderr,
            )
        if d.main:
            run.truncate_metrics(step)
            if run.read_config() != config:  # a longer run, another G_ema: a later resume keeps it
                run.write_config(config, run.read_config_dict().get("meta", {}))
    elif d.main:
        run.create()
        lock.acquire()
        if run.metrics_path.exists():  # a restart of a run killed before its first checkpoint
            run.truncate_metrics(0)
        meta = {
            "command": " ".join(sys.argv) if meta is None else meta.get("command", ""),
            "created": time.time(),
            "began_studio": __version__,
            "torch": torch.__version__,
            "hardware": hardware_name(device, d.world),
            "fast_path": step_fn.path.record(),
            "processes": d.world,
            "dataset": dataset.description,
            "images": len(images),
            **({"heldout_images": len(heldout_set)} if heldout_set is not None else {}),
            "skipped_files": dataset.skipped,
            **(meta or {}),
        }
        run.write_config(config, meta)
        for which in _generators(model):
            if not run.samples(which):
                sample_grid(0, which)
    if d.main and run.stop_requested() and run.stop_path.stat().st_mtime < started:
        run.clear_stop()
    rank_log = _RankLog(d)
    # What every checkpoint states about the run (its command, its data), read once.
    run_meta = run.read_config_dict().get("meta", {}) if d.main else {}

    def save_checkpoint(as_best: bool = False) -> Path | None:
        nonlocal saved_at
        if not as_best:
            saved_at = step
        z_states = d.gather(z_gen.get_state().cpu())  # every rank takes part
        if not d.main:
            return None

        def write(tmp: Path) -> None:
            hardware = hardware_name(device, d.world)
            facts = dict(step=step, wall_time=wall, hardware=hardware, metrics=last)
            card = model_card(
                config, **facts, command=run_meta.get("command"), dataset=dataset.description
            )
            generator = best.get("generator", "G") if as_best else "G"
            record = training_record(config, **facts, meta=run_meta, generator=generator)
            save_pretrained(model, tmp, card=card, training=record)
            if step_fn.averages is not None:
                generators.save_sweep(step_fn.averages, tmp)
            training_state.save(
                tmp,
                z_states=z_states,
                step=step,
                seed=cfg_t.seed,
                k_t=float(step_fn.k_t),
                lr=float(lr),
                wall_time=wall,
                processes=d.world,
                opt_G=opt_G.state_dict(),
                opt_D=opt_D.state_dict(),
                plateau=plateau.state_dict(),
                **({"best": best} if best else {}),
            )

        return run.write_checkpoint(step, write, keep=cfg_t.keep_checkpoints, best=as_best)

    def status(state: str, **extra: Any) -> None:
        if d.main:
            run.write_status(
                state, step=step, steps=cfg_t.steps, k_t=float(step_fn.k_t), lr=float(lr), **extra
            )

    def stop_now() -> bool:
        local = (d.main and run.stop_requested()) or bool(should_stop and should_stop())
        return d.any(local, device)

    sums = _Sums(device)
    last: dict[str, Any] = {}
    t_start, t_log, steps_at_log = time.perf_counter(), time.perf_counter(), step
    wall = wall_before
    status("running", processes=d.world)
    outcome = "failed"
    try:
        while step < cfg_t.steps:
            x = batches(step).to(device, non_blocking=True)
            model.set_carry(_carry(step, cfg_t.carry_steps, cfg_m.vanishing_residual))
            step_fn.set_lr(lr)
            losses = run_step(x, step)
            L_x, L_G, M = losses["L_x"], losses["L_G"], losses["M_global"]
            sums.add(
                L_x=L_x,
                L_G=L_G,
                L_D=losses["L_D"],
                M_global=M,
                balance=balance(L_x, L_G, cfg_t.gamma),
            )
            rank_log.add(losses["local"])
            lr = plateau.observe(M, lr)
            step += 1
            if memorisation is not None and step % cfg_t.heldout_every == 0:
                pending.update(memorisation(model, step_fn.amp))
                if augment is not None:
                    pending["augment_p"] = augment.p
            if scoring and step % cfg_t.score_every == 0:
                # G and G_ema are scored alike; the best checkpoint names whichever won.
                new_best = None
                if scorer is not None:
                    scores = {
                        which: scorer(generators.select(model, which))
                        for which in _generators(model)
                    }
                    winner = min(scores, key=lambda which: scores[which])
                    pending.update(score=scores["G"], score_metric=scorer.name)
                    if "G_ema" in scores:
                        pending["score_G_ema"] = scores["G_ema"]
                    if scores[winner] < best.get("score", math.inf):
                        new_best = {"step": step, "score": scores[winner], "generator": winner}
                new_best = d.broadcast(new_best)  # rank 0's decision, on every rank
                if new_best is not None:
                    best = new_best
                    _check_finite(model, step)
                    save_checkpoint(as_best=True)
                pending.update(best_step=best.get("step"), best_score=best.get("score"))
                pending["best_generator"] = best.get("generator", "G")

            logging_step = step % cfg_t.log_every == 0 or step == cfg_t.steps
            if logging_step:
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
                    "k_t": float(step_fn.k_t),
                    **means,
                    "lr": float(lr),
                    "images_per_s": rate * cfg_t.batch_size,
                    "steps_per_s": rate,
                    "eta_s": (cfg_t.steps - step) / max(rate, 1e-9),
                    "wall_time": wall,
                    **pending,
                }
                pending = {}
                t_log, steps_at_log = now, step
                rank_log.write(step, float(step_fn.k_t), float(lr))
                if d.main:
                    run.append_metrics(last)
                    status("running", processes=d.world)  # also a heartbeat
                yield last
            if d.main and (step % cfg_t.sample_every == 0 or step == cfg_t.steps):
                for which in _generators(model):
                    sample_grid(step, which)
            if step % cfg_t.checkpoint_every == 0 or step == cfg_t.steps:
                _check_finite(model, step)
                save_checkpoint()
                status("running", processes=d.world)
            # A stop is agreed by all ranks; in a distributed run, once per logging interval.
            if (logging_step or not d.active) and stop_now():
                break
        outcome = "finished" if step >= cfg_t.steps else "stopped"
    except GeneratorExit:
        outcome = "stopped"
    except BaseException as e:
        if d.is_lost_contact(e):
            e = d.lost(e)
        cause, e = e, write_error(e, run.path, "run's files (a sample grid)") or e
        kind = "interrupted" if isinstance(e, KeyboardInterrupt) else type(e).__name__
        try:
            status("failed", error=f"{kind}: {e}", traceback=traceback.format_exc()[-4000:])
        except OSError as status_error:  # never hide the error that failed the run
            print(
                f"warning: the run could not be marked failed: {status_error} Until then "
                "status.json says it is running; the dashboard shows it failed once this process "
                "has ended.",
                file=sys.stderr,
            )
        if isinstance(e, distributed.RankLostError):
            raise e from None
        if e is not cause:
            raise e from cause
        raise
    finally:
        if outcome == "stopped":
            wall = wall_before + time.perf_counter() - t_start
            if saved_at != step:
                _check_finite(model, step)
                save_checkpoint()
            if d.main:
                run.clear_stop()
        if outcome != "failed":
            status(outcome, metrics=last)
            rank_log.final(model, float(step_fn.k_t), float(lr))
        lock.release()


class _RankLog:
    """Diagnostics for distributed runs: with BEGAN_RANK_LOG_DIR set, every rank appends its own
    (not averaged) losses per logging interval to rank{r}.jsonl there, then its final k_t, lr
    and a digest of its weights. The run directory itself stays rank 0's alone."""

    def __init__(self, d: Dist) -> None:
        folder = os.environ.get("BEGAN_RANK_LOG_DIR")
        self.path = Path(folder) / f"rank{d.rank}.jsonl" if folder else None
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, local: torch.Tensor) -> None:
        if self.path:
            self.total, self.count = self.total + local.detach().double(), self.count + 1

    def write(self, step: int, k_t: float, lr: float) -> None:
        if self.path and self.count:
            L_x, L_G, L_D = (self.total / self.count).tolist()
            self._append({"step": step, "L_x": L_x, "L_G": L_G, "L_D": L_D, "k_t": k_t, "lr": lr})
            self.total, self.count = 0.0, 0

    def final(self, model: BEGAN, k_t: float, lr: float) -> None:
        if self.path:
            digest = hashlib.sha256()
            for name, p in sorted(model.state_dict().items()):
                digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
            self._append({"final": True, "k_t": k_t, "lr": lr, "weights": digest.hexdigest()})

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


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


def _generators(model: BEGAN) -> list[str]:
    return ["G"] + (["G_ema"] if model.G_ema is not None else [])


def _restore_weights(
    model: BEGAN,
    averages: ema.Averages | None,
    checkpoint: Path,
    device: torch.device,
    main: bool,
) -> None:
    """G, D and the averages from a checkpoint. A run that kept no G_ema before gains one,
    started from G as it is now; one resumed without G_ema drops it."""
    loaded = load(checkpoint, device=device, expect=model.config).state_dict()
    gains = model.G_ema is not None and not any(k.startswith("G_ema.") for k in loaded)
    if model.G_ema is None:
        loaded = {k: v for k, v in loaded.items() if not k.startswith("G_ema.")}
    missing, unexpected = model.load_state_dict(loaded, strict=False)
    if unexpected or any(not k.startswith("G_ema.") for k in missing):
        raise CheckpointError(f"{checkpoint} does not fit this model: {missing or unexpected}")
    if averages is None:
        return
    if gains:
        averages.reset_to_G()
        started = list(averages.nets)
    else:
        started = averages.load_sweep_state(generators.load_sweep(checkpoint))
    if started and main:
        kimgs = ", ".join(f"{k:g}" for k in started)
        print(
            f"note: {checkpoint.name} kept no average of G at half-life {kimgs} kimg; it starts "
            "from G as it is at this step.",
            file=sys.stderr,
        )


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


def _check_sizes(config: RunConfig, where: str) -> None:
    """The bounds a model folder is held to (checkpoint_checks), and a batch size that fits."""
    try:
        check_config(config.model, where)
    except CheckpointError as e:
        raise ConfigError(str(e).replace("not loaded", "not trained")) from None
    if config.train.batch_size > MAX_BATCH:
        raise ConfigError(
            f"{where} asks for batch_size={config.train.batch_size}, above the limit of "
            f"{MAX_BATCH}: not trained (BEGAN's batch is 16; a GPU takes a few hundred)."
        )


def _check_resume(run: RunDir, config: RunConfig) -> Path:
    if not run.exists():
        raise ConfigError(f"cannot resume {run.path}: it is not a run directory (no config.json).")
    checkpoint = run.resume_checkpoint(training_state.problem)
    if checkpoint is None:
        none = (
            "all its checkpoints are damaged" if run.checkpoints() else "it has no checkpoint yet"
        )
        raise ConfigError(f"cannot resume {run.path}: {none}; start it afresh.")
    stored = run.read_config()
    _check_sizes(stored, str(run.config_path))
    if stored.model != config.model:
        raise CheckpointError(
            f"cannot resume {run.path} with another model: {describe_mismatch(config.model, stored.model)}."
        )
    frozen = ("batch_size", "gamma", "lambda_k", "eta", "beta1", "beta2", "seed", "lr_window")
    frozen += ("augment", "augment_p", "heldout_every")
    changed = [k for k in frozen if getattr(stored.train, k) != getattr(config.train, k)]
    if changed or stored.data != config.data:
        what = ", ".join(changed + (["data"] if stored.data != config.data else []))
        raise ConfigError(
            f"cannot resume {run.path} with different {what}: an exact resume needs the stored "
            "values; resume without those options, or start a new run."
        )
    return checkpoint

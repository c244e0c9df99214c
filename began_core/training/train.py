"""The BEGAN training loop: `Trainer`, one run's lifecycle in named parts (setup, restore or
create, step, record, checkpoint, close), and `train()`, a thin generator of metric records
over it, consumed by the CLI, the dashboard's launcher and the tests.

    with Trainer(config, "runs/demo") as trainer:
        for record in trainer.records():
            print(record["step"], record["k_t"], record["M_global"])

The loop writes the run directory (runs/run_dir.py) as it goes; resuming continues bit-for-bit
where the last checkpoint left off: weights, both Adam states, k_t, learning rate and RNG states.
"""

from __future__ import annotations

import logging
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
from ..checkpoints.hub import save_pretrained
from ..checkpoints.model_card import model_card, training_record
from ..config import ConfigError, RunConfig, parse_policy
from ..data.dataset import ImageDataset
from ..data.decoding import stopping
from ..data.images import save_grid
from ..data.sources import open_dataset
from ..equilibrium import balance
from ..faults import write_error
from ..nn.model import BEGAN
from ..runs.run_dir import RunDir
from ..runs.run_lock import RunLock
from . import distributed, heldout, training_state
from .augment import Augment
from .batches import Batches
from .distributed import hardware_name
from .graphed import GraphedStep
from .resume import check_resume, check_sizes, restore_weights
from .schedule import PlateauHalving
from .scoring import HeldoutScore
from .step import TrainStep
from .tallies import RankLog, Sums

log = logging.getLogger(__name__)

SAMPLE_GRID = 64  # images in every sample grid, from one fixed z


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
    """Train BEGAN, yielding one metric record every `log_every` steps: a thin generator over
    `Trainer`, which sets up on the first `next()`. Exhaust it or close it (`contextlib.closing`):
    closing it early saves a checkpoint and marks the run "stopped", as `Trainer.close` does."""
    with Trainer(
        config, run_dir, resume=resume, dataset=dataset, meta=meta, should_stop=should_stop
    ) as trainer:
        yield from trainer.records()


class Trainer:
    """One training run, its lifecycle in named parts: setup (data, model, step; in __init__),
    restore or create the run directory, step, record, checkpoint, and an explicit close.

        with Trainer(config, "runs/demo") as trainer:
            for record in trainer.records():
                print(record["step"], record["k_t"], record["M_global"])

    With `resume=True`, `run_dir` must hold a checkpoint; `config` may only differ from the
    stored one in `train.steps` (to train longer) and the logging intervals. A STOP file in
    the run directory or `should_stop()` turning True ends `records()` as "stopped"; leaving
    the `with` block writes the final checkpoint and status (close); any error marks the run
    "failed" with the message, and is re-raised. Launched by torchrun, it trains with
    DistributedDataParallel: see distributed.py.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | os.PathLike,
        *,
        resume: bool = False,
        dataset: ImageDataset | None = None,
        meta: dict[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config, self.run, self.should_stop = config, RunDir(run_dir), should_stop
        self.started = time.time()  # a STOP older than this is stale; a newer one is honoured
        self.outcome = "stopped"  # a `with` block left before the last step is a stop
        self.lock = RunLock(self.run.path)  # one writer per run (run_lock.py), rank 0 writing
        try:
            checkpoint = self._setup(resume, dataset)
            if checkpoint is not None:
                self._restore(checkpoint)
            else:
                self._create(meta)
        except BaseException:
            self.lock.release()
            raise
        run, d = self.run, self.d
        if d.main and run.stop_requested() and run.stop_path.stat().st_mtime < self.started:
            run.clear_stop()
        self.rank_log = RankLog(d)
        # What every checkpoint states about the run (its command, its data), read once.
        self.run_meta = run.read_config_dict().get("meta", {}) if d.main else {}
        self.sums = Sums(self.device)
        self.last: dict[str, Any] = {}  # the newest metric record
        self.pending: dict[str, Any] = {}  # measurements made between two records
        self.t_start = self.t_log = time.perf_counter()
        self.steps_at_log, self.wall = self.step, self.wall_before
        self._status("running", processes=d.world)

    # ------------------------------------------------------------------ setup

    def _setup(self, resume: bool, dataset: ImageDataset | None) -> Path | None:
        """Devices, checks, data, model and step; returns the checkpoint to resume, if any."""
        config, run = self.config, self.run
        cfg_m, cfg_t = config.model, config.train
        d, device = distributed.init(cfg_t.device)
        self.d, self.device = d, device
        if cfg_t.deterministic:
            torch.use_deterministic_algorithms(True)
        # Bounded before anything is allocated or decoded: a config.json is untrusted input.
        check_sizes(config, str(run.config_path) if resume else "the configuration")
        if d.main and run.exists():
            # Before the checkpoint is chosen (nobody writes a newer one) and before the data
            # and the networks: a second writer is refused at once, not minutes later.
            self.lock.acquire()
        checkpoint = check_resume(run, config) if resume else None
        if not resume and run.latest_checkpoint() is not None:
            raise ConfigError(
                f"{run.path} already holds a run with checkpoints; resume it with --resume "
                f"{run.path}, or choose another --out."
            )
        if dataset is None:
            for turn in (True, False):  # rank 0 first, so that it alone fills the decode cache
                if d.main == turn:
                    with stopping(self.should_stop):  # a Ctrl-C while decoding stops it at once
                        dataset = open_dataset(
                            config.data.source,
                            cfg_m.resolution,
                            cfg_m.channels,
                            celeba_crop=config.data.celeba_crop,
                            max_images=config.data.max_images,
                        )
                d.barrier()
        assert dataset is not None  # opened above on every rank
        if (dataset.resolution, dataset.channels) != (cfg_m.resolution, cfg_m.channels):
            raise ConfigError("the dataset's resolution or channels differ from the model's")
        self.dataset = dataset
        # What D trains on, and what it never sees.
        images, heldout_set = heldout.split_dataset(dataset, config.data.heldout, cfg_t.seed)
        self.images, self.heldout_set = images, heldout_set
        self.batches = Batches(images, cfg_t.batch_size, cfg_t.seed, d, device, config.data.hflip)

        if d.main:  # seconds (the optimizers' first import of torch's compiler, the scorer)
            scorer = " and the held-out scorer" if cfg_t.score_every and heldout_set else ""
            log.info("building the networks, the optimizers%s", scorer)
        torch.manual_seed(cfg_t.seed)
        random.seed(cfg_t.seed)
        self.model = model = BEGAN(cfg_m).to(device)
        policy = parse_policy(cfg_t.augment)
        p = float(cfg_t.augment_p)
        aug = Augment(policy, p, cfg_t.seed, rank=d.rank, world=d.world) if policy else None
        self.augment = aug
        self.step_fn = step_fn = TrainStep(model, cfg_t, device, d, aug)
        self.run_step = GraphedStep(step_fn) if step_fn.path.graph else step_fn  # graphed.py
        self.memorisation = (
            heldout.Memorisation(images, heldout_set, device, cfg_t.eta) if heldout_set else None
        )
        # G is scored by rank 0 alone, which decides "best" for all (ranks never compare floats).
        self.scoring = bool(cfg_t.score_every and heldout_set is not None)
        self.scorer: HeldoutScore | None = None
        if self.scoring and d.main:
            assert heldout_set is not None
            self.scorer = HeldoutScore.of_heldout(
                heldout_set, config.data.source, cfg_t.seed, cfg_m.Nz
            )
        self.best: dict[str, Any] = {}  # {"step", "score", "generator"} of the best so far
        # One fixed z for every sample grid, so grids at different steps are comparable.
        z_fixed = torch.rand(
            SAMPLE_GRID, cfg_m.Nz, generator=torch.Generator().manual_seed(cfg_t.seed + 1)
        )
        self.z_fixed = (z_fixed * 2 - 1).to(device)
        self.plateau = PlateauHalving(cfg_t.lr_window, cfg_t.lr_tolerance, cfg_t.lr_min)
        # The learning rate is a tensor where the step runs (CUDA), read only to log and save.
        self.lr_device = device if device.type == "cuda" else torch.device("cpu")
        self.lr: torch.Tensor | float = self._as_lr(cfg_t.lr)
        self.step, self.wall_before = 0, 0.0
        self.saved_at = -1  # step of the newest checkpoint; every rank tracks it the same way
        return checkpoint

    def _z_gen(self) -> torch.Generator:
        if self.step_fn.z_gen is None:  # only a step built on the meta device has none
            raise RuntimeError("this training step has no noise generator to save or restore")
        return self.step_fn.z_gen

    def _as_lr(self, value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64, device=self.lr_device)

    # ------------------------------------------------------------------ restore or create

    def _restore(self, checkpoint: Path) -> None:
        """Weights, both Adam states, k_t, lr, the plateau rule and the RNG states."""
        d, run, step_fn = self.d, self.run, self.step_fn
        restore_weights(self.model, step_fn.averages, checkpoint, self.device, d.main)
        state = training_state.load(checkpoint)
        step_fn.opt_G.load_state_dict(state["opt_G"])
        step_fn.opt_D.load_state_dict(state["opt_D"])
        self.plateau.load_state_dict(state["plateau"])
        self.best = dict(state.get("best") or {})
        step_fn.k_t = torch.tensor(state["k_t"], device=self.device)
        self.lr, self.step = self._as_lr(state["lr"]), state["step"]
        self.wall_before = state["wall_time"]
        self.saved_at = self.step
        why = training_state.restore_rng(state, self._z_gen(), d.rank, d.world)
        if why and d.main:
            print(
                f"note: {why}; weights, optimizers, k_t and lr are exact, the noise draws "
                "re-seeded.",
                file=sys.stderr,
            )
        if d.main:
            run.truncate_metrics(self.step)
            if run.read_config() != self.config:  # longer, another G_ema: a later resume keeps it
                run.write_config(self.config, run.read_config_dict().get("meta", {}))

    def _create(self, meta: dict[str, Any] | None) -> None:
        """A new run directory: its config with what it was made from, and step 0's samples."""
        d, run = self.d, self.run
        if not d.main:
            return
        run.create()
        self.lock.acquire()
        if run.metrics_path.exists():  # a restart of a run killed before its first checkpoint
            run.truncate_metrics(0)
        dataset, heldout_set = self.dataset, self.heldout_set
        meta = {
            "command": " ".join(sys.argv) if meta is None else meta.get("command", ""),
            "created": time.time(),
            "began_studio": __version__,
            "torch": torch.__version__,
            "hardware": hardware_name(self.device, d.world),
            "fast_path": self.step_fn.path.record(),
            "processes": d.world,
            "dataset": dataset.description,
            "images": len(self.images),
            **({"heldout_images": len(heldout_set)} if heldout_set is not None else {}),
            "skipped_files": dataset.skipped,
            **(meta or {}),
        }
        run.write_config(self.config, meta)
        for which in _generators(self.model):
            if not run.samples(which):
                self._sample_grid(0, which)

    # ------------------------------------------------------------------ the loop

    def records(self) -> Iterator[dict[str, Any]]:
        """Train to `train.steps` or a stop, yielding each logging step's record; sets the
        outcome ("finished" or "stopped") that `close` writes."""
        cfg_t, d = self.config.train, self.d
        while self.step < cfg_t.steps:
            record = self._train_step()
            if record is not None:
                yield record
            self._samples_and_checkpoint()
            # A stop is agreed by all ranks; in a distributed run, once per logging interval.
            if (record is not None or not d.active) and self._stop_now():
                break
        self.outcome = "finished" if self.step >= cfg_t.steps else "stopped"

    def _train_step(self) -> dict[str, Any] | None:
        """One step of D and G, k_t and lr; scores G when due; the record on a logging step."""
        cfg_t, cfg_m, model, step_fn = (
            self.config.train,
            self.config.model,
            self.model,
            self.step_fn,
        )
        x = self.batches(self.step).to(self.device, non_blocking=True)
        model.set_carry(_carry(self.step, cfg_t.carry_steps, cfg_m.vanishing_residual))
        step_fn.set_lr(self.lr)
        losses = self.run_step(x, self.step)
        L_x, L_G, M = losses["L_x"], losses["L_G"], losses["M_global"]
        self.sums.add(
            L_x=L_x,
            L_G=L_G,
            L_D=losses["L_D"],
            M_global=M,
            balance=balance(L_x, L_G, cfg_t.gamma),
        )
        self.rank_log.add(losses["local"])
        self.lr = self.plateau.observe(M, self.lr)
        self.step += 1
        step = self.step
        if self.memorisation is not None and step % cfg_t.heldout_every == 0:
            self.pending.update(self.memorisation(model, step_fn.amp))
            if self.augment is not None:
                self.pending["augment_p"] = self.augment.p
        if self.scoring and step % cfg_t.score_every == 0:
            self._score()
        if step % cfg_t.log_every == 0 or step == cfg_t.steps:
            return self._record()
        return None

    def _score(self) -> None:
        """G and G_ema scored alike on the held-out images; the best checkpoint names the
        winner. Rank 0 decides and broadcasts, so ranks never compare floats."""
        new_best = None
        if self.scorer is not None:
            scorer = self.scorer
            scores = {
                which: scorer(generators.select(self.model, which))
                for which in _generators(self.model)
            }
            winner = min(scores, key=lambda which: scores[which])
            self.pending.update(score=scores["G"], score_metric=scorer.name)
            if "G_ema" in scores:
                self.pending["score_G_ema"] = scores["G_ema"]
            if scores[winner] < self.best.get("score", math.inf):
                new_best = {"step": self.step, "score": scores[winner], "generator": winner}
        new_best = self.d.broadcast(new_best)  # rank 0's decision, on every rank
        if new_best is not None:
            self.best = new_best
            _check_finite(self.model, self.step)
            self.save_checkpoint(as_best=True)
        best = self.best
        self.pending.update(best_step=best.get("step"), best_score=best.get("score"))
        self.pending["best_generator"] = best.get("generator", "G")

    def _record(self) -> dict[str, Any]:
        """The logging interval's means (one host sync), appended to metrics.jsonl."""
        cfg_t, step = self.config.train, self.step
        now = time.perf_counter()
        self.wall = self.wall_before + now - self.t_start
        means = self.sums.pop()
        if not all(math.isfinite(v) for v in means.values()):
            raise NonFiniteLossError(
                f"non-finite loss at step {step} ({means}); the run stopped, and its last "
                "good checkpoint is kept. Try a lower --lr or check the data."
            )
        rate = (step - self.steps_at_log) / max(now - self.t_log, 1e-9)
        k_t, lr = float(self.step_fn.k_t), float(self.lr)
        self.last = {
            "step": step,
            "k_t": k_t,
            **means,
            "lr": lr,
            "images_per_s": rate * cfg_t.batch_size,
            "steps_per_s": rate,
            "eta_s": (cfg_t.steps - step) / max(rate, 1e-9),
            "wall_time": self.wall,
            **self.pending,
        }
        self.pending = {}
        self.t_log, self.steps_at_log = now, step
        self.rank_log.write(step, k_t, lr)
        if self.d.main:
            self.run.append_metrics(self.last)
            self._status("running", processes=self.d.world)  # also a heartbeat
        return self.last

    def _samples_and_checkpoint(self) -> None:
        cfg_t, step = self.config.train, self.step
        if self.d.main and (step % cfg_t.sample_every == 0 or step == cfg_t.steps):
            for which in _generators(self.model):
                self._sample_grid(step, which)
        if step % cfg_t.checkpoint_every == 0 or step == cfg_t.steps:
            _check_finite(self.model, step)
            self.save_checkpoint()
            self._status("running", processes=self.d.world)

    def _stop_now(self) -> bool:
        d = self.d
        local = (d.main and self.run.stop_requested()) or bool(
            self.should_stop and self.should_stop()
        )
        return d.any(local, self.device)

    # ------------------------------------------------------------------ checkpoint

    def _sample_grid(self, at: int, which: str) -> None:
        path = self.run.sample_path(at, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(generators.select(self.model, which).generate(self.z_fixed), path, nrow=8)

    def save_checkpoint(self, as_best: bool = False) -> Path | None:
        """A checkpoint of this step (every rank takes part; rank 0 writes): the model
        repository, G_ema's sweep and the training state, written whole or not at all."""
        if not as_best:
            self.saved_at = self.step
        d, step_fn, cfg_t = self.d, self.step_fn, self.config.train
        z_states = d.gather(self._z_gen().get_state().cpu())  # every rank takes part
        if not d.main:
            return None
        step, wall, last, best = self.step, self.wall, self.last, self.best

        def write(tmp: Path) -> None:
            hardware = hardware_name(self.device, d.world)
            facts: dict[str, Any] = dict(step=step, wall_time=wall, hardware=hardware, metrics=last)
            card = model_card(
                self.config,
                **facts,
                command=self.run_meta.get("command"),
                dataset=self.dataset.description,
            )
            generator = best.get("generator", "G") if as_best else "G"
            record = training_record(self.config, **facts, meta=self.run_meta, generator=generator)
            save_pretrained(self.model, tmp, card=card, training=record)
            if step_fn.averages is not None:
                generators.save_sweep(step_fn.averages, tmp)
            training_state.save(
                tmp,
                z_states=z_states,
                step=step,
                seed=cfg_t.seed,
                k_t=float(step_fn.k_t),
                lr=float(self.lr),
                wall_time=wall,
                processes=d.world,
                opt_G=step_fn.opt_G.state_dict(),
                opt_D=step_fn.opt_D.state_dict(),
                plateau=self.plateau.state_dict(),
                **({"best": best} if best else {}),
            )

        return self.run.write_checkpoint(step, write, keep=cfg_t.keep_checkpoints, best=as_best)

    def _status(self, state: str, **extra: Any) -> None:
        if self.d.main:
            self.run.write_status(
                state,
                step=self.step,
                steps=self.config.train.steps,
                k_t=float(self.step_fn.k_t),
                lr=float(self.lr),
                **extra,
            )

    # ------------------------------------------------------------------ close and fail

    def __enter__(self) -> Trainer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        if error is None:
            self.close(self.outcome)
        elif isinstance(error, GeneratorExit):  # train() closed early: a stop
            self.close("stopped")
        else:
            raised = self.fail(error)
            if raised is not error:
                raise raised from (None if isinstance(raised, distributed.RankLostError) else error)

    def close(self, outcome: str) -> None:
        """The end of the run, said explicitly: on a stop, a checkpoint of this step if there is
        none; the final status; the lock released. Called once, by leaving the `with` block."""
        try:
            if outcome == "stopped":
                self.wall = self.wall_before + time.perf_counter() - self.t_start
                if self.saved_at != self.step:
                    _check_finite(self.model, self.step)
                    self.save_checkpoint()
                if self.d.main:
                    self.run.clear_stop()
            if outcome != "failed":
                self._status(outcome, metrics=self.last)
                self.rank_log.final(self.model, float(self.step_fn.k_t), float(self.lr))
        finally:
            self.lock.release()

    def fail(self, error: BaseException) -> BaseException:
        """Mark the run failed with `error`'s message; returns the error to raise (a lost rank
        or a write failure said in the user's terms)."""
        original = error
        try:
            if self.d.is_lost_contact(error):
                error = self.d.lost(error)
            error = write_error(error, self.run.path, "run's files (a sample grid)") or error
            kind = "interrupted" if isinstance(error, KeyboardInterrupt) else type(error).__name__
            tail = "".join(traceback.format_exception(original))[-4000:]
            try:
                self._status("failed", error=f"{kind}: {error}", traceback=tail)
            except OSError as status_error:  # never hide the error that failed the run
                print(
                    f"warning: the run could not be marked failed: {status_error} Until then "
                    "status.json says it is running; the dashboard shows it failed once this "
                    "process has ended.",
                    file=sys.stderr,
                )
            return error
        finally:
            self.lock.release()


def _generators(model: BEGAN) -> list[str]:
    return ["G"] + (["G_ema"] if model.G_ema is not None else [])


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

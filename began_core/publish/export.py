"""`python -m began_core export RUN_OR_CHECKPOINT OUT`: a run's checkpoint as a shareable model
repository, the form of everything in `pretrained/`.

OUT gets config.json, model.safetensors (float16 by default: half the size, and G's images
differ from float32 by far less than one grey level), training.json, a sample grid and a
model card that states the data and its licence, steps, wall time, hardware, the exact
command that trained it and, unless `--no-evaluate`, the offline quality metrics of these very
weights, with the same metrics for earlier checkpoints of the run (`--history`), so a reader
sees quality against training steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import generators, hub
from ..checkpoints.model_card import model_card, training_record
from ..config import ConfigError, RunConfig
from ..data.images import make_grid
from ..evaluation.report import quality_table
from ..runs.run_dir import RunDir, find_checkpoint
from ..training import training_state

SAMPLES = "samples.png"
SAMPLE_SEED = 0


def locate(
    checkpoint_or_run: str | os.PathLike, step: int | None = None, *, latest: bool = False
) -> tuple[Path, RunDir]:
    """(checkpoint folder, its run) for a run directory or a checkpoint folder inside a run's
    checkpoints/. A run gives the checkpoint at `step` if one is named; else its best-scoring
    checkpoint where it kept one (train --score-every), unless `latest`; else its latest."""
    best = RunDir(checkpoint_or_run).best_checkpoint() if step is None and not latest else None
    if best is not None and RunDir(checkpoint_or_run).exists():
        return best, RunDir(checkpoint_or_run)
    checkpoint, run = find_checkpoint(checkpoint_or_run, step)
    if run is None:
        raise ConfigError(
            f"{checkpoint} is neither a run directory nor a checkpoint inside one: export needs "
            "the run to state the data, command and wall time (a folder with config.json and "
            "checkpoints/)."
        )
    return checkpoint, run


def _quality(evaluation: dict[str, Any] | None, past: list[dict[str, Any]], at: int) -> str:
    """The card's quality table: earlier checkpoints' evaluations, then this one's."""
    if evaluation is None:
        return ""
    rows = [*((f"step {h['step']}", h) for h in past), (f"step {at} (this)", evaluation)]
    return quality_table(rows)


def _offered(checkpoint: Path) -> list[str]:
    return generators.available(hub.load(checkpoint), checkpoint)


def _portable(result: dict[str, Any]) -> dict[str, Any]:
    """An evaluate result without this machine's absolute paths."""
    out = dict(result)
    for key in ("checkpoint", "classifier"):
        p = Path(str(out.get(key, "")))
        try:
            out[key] = p.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            out[key] = p.name
    return out


def export(
    checkpoint_or_run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    step: int | None = None,
    latest: bool = False,
    dtype: torch.dtype = torch.float16,
    generator_only: bool = False,
    evaluate: bool = True,
    history: Sequence[int] = (),
    n: int | None = None,
    command: str | None = None,
    note: str = "",
    generator: str = "auto",
) -> Path:
    """Write the checkpoint as a model repository at `out` (replaced atomically) and return it.

    `generator` is the one the export names for use, and its samples and metrics are of it:
    "G", "G_ema", "G_ema:KIMG" (a swept average, shipped as the export's G_ema) or "auto"
    (the one the checkpoint names: a best checkpoint names whichever of G and G_ema scored
    better). G_ema, where the checkpoint has one, is exported with G either way.

    `history`: steps of earlier checkpoints of the same run to evaluate as well. `command`
    overrides the training command the run recorded (e.g. to drop a machine-specific --out);
    `note` is added to the model card under "Notes"."""
    from ..evaluation import evaluate as ev

    checkpoint, run = locate(checkpoint_or_run, step, latest=latest)
    stored = run.read_config_dict()
    config, meta = RunConfig.from_dict(stored), dict(stored.get("meta", {}))
    if command is not None:
        meta["command"] = command
    state = training_state.load(checkpoint)
    at, wall = int(state["step"]), float(state.get("wall_time", 0.0))
    logged = [r for r in run.read_metrics() if r.get("step", 0) <= at]
    facts: dict[str, Any] = dict(
        step=at,
        wall_time=wall,
        hardware=str(meta.get("hardware", "unknown")),
        metrics=logged[-1] if logged else None,
    )
    model = hub.load(checkpoint)
    chosen = generators.select(model, generator, checkpoint)
    if chosen.generator.startswith("G_ema:"):  # a swept average becomes the export's G_ema
        (model.G_ema or model.add_G_ema()).load_state_dict(chosen.G.state_dict())
    named = "G" if chosen.generator == "G" else "G_ema"
    record = training_record(config, **facts, meta=meta, generator=named)
    if named == "G_ema":
        swept = chosen.generator.partition(":")[2]
        record["G_ema_kimg"] = float(swept) if swept else float(config.train.ema_kimg)
    z = model.sample_z(64, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    kw: dict[str, Any] = {"n": n} if n is not None else {}

    out = check_out(out, run, checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(out)}{os.getpid()}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would follow the folder into a shared checkout
    try:
        hub.save_pretrained(model, tmp, training=record, dtype=dtype, generator_only=generator_only)
        shipped = hub.load(tmp)  # what a user loads: the samples and metrics are of these weights
        make_grid(generators.select(shipped, named).generate(z), nrow=8).save(tmp / SAMPLES)
        evaluation, past = None, []
        if evaluate:
            evaluation = _portable(ev.evaluate(tmp, generator=named, **kw))
            evaluation["checkpoint"] = out.name
            for s in sorted(set(history) - {at}):
                earlier = locate(run.path, s)[0]
                which = chosen.generator if chosen.generator in _offered(earlier) else "G"
                past.append(_portable(ev.evaluate(earlier, generator=which, **kw)))
            record["evaluation"] = evaluation
            record["history"] = past
        hub.describe(
            tmp,
            training=record,
            card=model_card(
                config,
                **facts,
                command=meta.get("command"),
                dataset=meta.get("dataset"),
                evaluation=evaluation,
                quality=_quality(evaluation, past, at),
                samples=SAMPLES,
                generator=named,
                ema_kimg=record.get("G_ema_kimg"),
                extra=f"\n## Notes\n\n{note.strip()}\n" if note.strip() else "",
            ),
        )
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# What an export writes; a folder holding anything else is not an earlier export.
EXPORT_FILES = frozenset({hub.CONFIG, hub.WEIGHTS, hub.TRAINING, "README.md", SAMPLES})


def check_out(out: str | os.PathLike, run: RunDir, checkpoint: Path) -> Path:
    """`out` resolved, or a ConfigError when writing it could remove what export did not
    write: the run, a folder inside it or around it, the current folder or one above it, a
    file, or a folder holding anything but an earlier export."""
    out = Path(out).resolve()
    here, run_path = Path.cwd().resolve(), run.path.resolve()

    def within(a: Path, b: Path) -> bool:
        return a == b or b in a.parents

    fix = "choose a new folder for the export, e.g. exports/<name>"
    if within(out, run_path) or within(checkpoint.resolve(), out):
        where = (
            "is the run"
            if out == run_path
            else ("lies inside the run" if within(out, run_path) else "contains the run")
        )
        raise ConfigError(f"export to {out}: that folder {where} {run_path}; {fix}.")
    if within(here, out):
        raise ConfigError(
            f"export to {out}: that is the current folder or one above it, which an export "
            f"would replace; {fix}."
        )
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"export to {out}: it exists and is not a folder; {fix}.")
    if out.is_dir() and any(out.iterdir()):
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
        others = [name for name in names if name not in EXPORT_FILES]
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise ConfigError(
                f"export to {out}: it holds files an export does not write ({shown}), so it is "
                f"not an earlier export that may be replaced; {fix}, or empty it yourself."
            )
        if not isinstance((hub.read_training(out) or {}).get("run"), dict):
            raise ConfigError(
                f"export to {out}: it holds {', '.join(names)} but no export's training.json, so "
                f"it is not an earlier export that may be replaced; {fix}."
            )
    return out


def _temp_prefix(out: Path) -> str:
    return f".{out.name}.export-"


def _remove_stale_temps(out: Path) -> None:
    """Temp folders of exports to `out` whose process is gone (killed by SIGKILL, say)."""
    for tmp in out.parent.glob(f"{_temp_prefix(out)}*"):
        pid = tmp.name[len(_temp_prefix(out)) :].split(".", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` at `out` by rename: where an earlier export is there, the
    two are exchanged in one step (renameat2 RENAME_EXCHANGE) and the old one then removed,
    so that `out` always holds a complete export."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp)  # now the earlier export
        return
    old = tmp.with_name(tmp.name + ".old")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    return renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) == 0

"""`python -m began_core train | sample | datasets | evaluate | export | push | cache`: the
command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import GROUPS, ConfigError, RunConfig, check_seed
from ..flags import FLAGS, OPTIONS, Option, config_from_flags, seed_flag
from ..presets import PRESETS, preset_flags
from . import cache, evaluate, export, push

DESCRIPTION = """\
BEGAN (Boundary Equilibrium GAN, Berthelot, Schumm and Metz 2017): the discriminator is an
auto-encoder, and a proportional controller k_t keeps generator and discriminator in balance.

  gamma     the diversity ratio E[L(G(z))] / E[L(x)] the controller aims at: lower gamma makes
            D focus on reconstructing real images, giving sharper but less varied samples
            (the paper shows 0.3, 0.5, 0.7).
  lambda_k  the controller's gain: how far k_t moves per step in response to the imbalance
            gamma * L(x) - L(G(z)) (paper: 0.001).
"""


def add_option(group: Any, o: Option) -> None:
    """The `train` flag of config option `o`, typed, with its default said in the help."""
    shown = o.default_text
    if shown is None:
        shown = ("on" if o.default else "off") if o.type is bool else f"{o.default}"
    help = f"{o.help} (default {shown})" if shown else o.help
    kwargs: dict[str, Any] = {"help": help.replace("%", "%%"), "dest": o.flag}
    if o.type is bool:
        kwargs |= {"action": argparse.BooleanOptionalAction, "default": None}
    else:
        kwargs["type"] = seed_flag if o.flag == "seed" else o.type
    if o.choices:
        kwargs["choices"] = o.choices
    if o.metavar:
        kwargs["metavar"] = o.metavar
    group.add_argument(o.option, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m began_core",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a BEGAN (or resume one)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = {key: t.add_argument_group(title) for key, title in GROUPS.items()}
    g = groups["run"]
    g.add_argument("--out", type=Path, help="run directory to create")
    g.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint (optionally with a larger --steps)",
    )
    g.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="start a new run from a named set of flags; flags given beside it win: "
        + "; ".join(f"{name}: {p.summary}" for name, p in PRESETS.items()).replace("%", "%%"),
    )
    g.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar; one line per record")
    for o in OPTIONS.values():
        add_option(groups[o.group], o)

    s = sub.add_parser("sample", help="write a grid of samples from a checkpoint or a run")
    s.add_argument("checkpoint", help="checkpoint folder, run directory, or Hub repo id")
    s.add_argument("--out", type=Path, default=Path("samples.png"))
    s.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    s.add_argument("--nrow", type=int, default=None)
    s.add_argument("--seed", type=seed_flag, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument(
        "--generator",
        default="auto",
        help="G, G_ema, G_ema:KIMG, or auto (default: the one the checkpoint names, else G)",
    )

    sub.add_parser("datasets", help="list the built-in datasets")
    evaluate.add_parser(sub)
    export.add_parser(sub)
    push.add_parser(sub)
    cache.add_parser(sub)
    return p


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Defaults (or the stored config, on resume) overridden by the flags that were given."""
    given = {k: v for k, v in vars(args).items() if k in FLAGS and v is not None}
    preset = args.preset
    if args.resume is not None:
        from ..runs.run_dir import RunDir

        if preset is not None:
            raise ConfigError(
                f"--preset {preset} sets up a new run; --resume keeps the run's own settings "
                "(its config.json): leave --preset out."
            )
        return config_from_flags(given, RunDir(args.resume).read_config())
    return config_from_flags({**(preset_flags(preset) if preset else {}), **given})


def cmd_train(args: argparse.Namespace) -> int:
    if (args.out is None) == (args.resume is None):
        raise ConfigError("give exactly one of --out RUN_DIR (a new run) or --resume RUN_DIR.")
    config = resolve_config(args)
    run_dir = args.resume or args.out
    if args.dry_run:
        print(json.dumps({"run_dir": str(run_dir), **config.to_dict()}, indent=2))
        return 0

    from ..faults import RunWriteError
    from ..runs.run_dir import RunDir
    from ..training.distributed import RankLostError, shutdown
    from ..training.train import NonFiniteLossError, Trainer

    run = RunDir(run_dir)
    interrupts: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        interrupts.append(signum)  # the loop finishes its step, checkpoints, and exits
        if len(interrupts) > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    done = run.checkpoints()
    start = done[-1][0] if (args.resume is not None and done) else 0
    try:
        # Set up (the data opened, the run dir written) before the progress bar shows; leaving
        # the block closes the run: its last checkpoint and status, whatever ended it.
        with Trainer(
            config,
            run_dir,
            resume=args.resume is not None,
            meta={"command": _command(), "preset": args.preset},
            should_stop=lambda: bool(interrupts),
        ) as trainer:
            records = trainer.records()
            if main_rank:
                _report(config, start, args.quiet, records)
            else:
                for _ in records:  # other ranks train in step, silently
                    pass
    except (NonFiniteLossError, RankLostError, RunWriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    return _finish(run) if main_rank else 0


def _report(config: RunConfig, start: int, quiet: bool, records: Iterator[dict]) -> None:
    from tqdm import tqdm

    total = config.train.steps
    with tqdm(total=total, initial=start, disable=quiet, unit="step", dynamic_ncols=True) as bar:
        for r in records:
            bar.update(r["step"] - bar.n)
            bar.set_postfix_str(
                f"k_t={r['k_t']:.4f} M_global={r['M_global']:.4f} {r['images_per_s']:.0f} img/s"
            )
            if quiet:
                print(
                    f"step {r['step']}/{total} k_t={r['k_t']:.4f} L_x={r['L_x']:.4f} "
                    f"L_G={r['L_G']:.4f} M_global={r['M_global']:.4f} lr={r['lr']:.2e} "
                    f"{r['images_per_s']:.0f} img/s eta {r['eta_s']:.0f}s",
                    flush=True,
                )


def _finish(run: Any) -> int:
    status = run.read_status()
    print(f"{status['state']} at step {status.get('step')}: {run.path}", file=sys.stderr)
    return 0


def _command() -> str:
    return "python -m began_core " + " ".join(sys.argv[1:])


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from ..checkpoints.generators import select
    from ..checkpoints.hub import load
    from ..data.images import save_grid
    from ..runs.run_dir import find_checkpoint

    seed = check_seed(args.seed)
    source, _ = find_checkpoint(args.checkpoint)
    model = select(load(source, device=args.device), args.generator, source)
    z = model.sample_z(args.n, generator=torch.Generator(args.device).manual_seed(seed))
    save_grid(model.generate(z), args.out, nrow=args.nrow)
    print(f"wrote {args.n} samples of {model.generator} of {source} to {args.out}")
    return 0


def cmd_datasets(_: argparse.Namespace) -> int:
    from ..data.sources import BUILTIN_DATASETS

    for name, description in BUILTIN_DATASETS.items():
        print(f"{name:18s} {description}")
    return 0


class _Stderr(logging.StreamHandler):
    """A handler that writes to sys.stderr as it is at each line (a test may replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _start_up_lines() -> None:
    """The library's start-up lines (listing, decoding, compiling: seconds to minutes with
    nothing else on screen) on stderr, a line each; in a run of several processes from rank 0
    alone, as the progress bars are."""
    log = logging.getLogger("began_core")
    if not any(isinstance(h, _Stderr) for h in log.handlers):  # main() may run again
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _start_up_lines()
    from ..checkpoints.hub import CheckpointError
    from ..data.sources import DatasetError
    from ..evaluation.classifier import ClassifierError

    commands = {
        "train": cmd_train,
        "sample": cmd_sample,
        "datasets": cmd_datasets,
        "evaluate": evaluate.main,
        "export": export.main,
        "push": push.main,
        "cache": cache.main,
    }
    try:
        return commands[args.command](args)
    except (ConfigError, DatasetError, CheckpointError, ClassifierError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

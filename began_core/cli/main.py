"""`python -m began_core train | sample | datasets | evaluate | export | push | cache`: the
command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, check_seed
from ..flags import FLAGS, config_from_flags, seed_flag
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
    d = ModelConfig(), TrainConfig(), DataConfig()
    g = t.add_argument_group("data")
    g.add_argument(
        "--data",
        help=f"built-in dataset name, image folder or .zip (default {d[2].source}); built-ins: see `python -m began_core datasets`",
    )
    g.add_argument(
        "--celeba-crop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="crop CelebA's aligned 178x218 images to the 128x128 box at (25, 50) (default: detect)",
    )
    g.add_argument("--max-images", type=int, help="use at most this many images")
    g.add_argument(
        "--hflip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirror a random half of every batch left to right (not in the paper; default off)",
    )
    g.add_argument(
        "--heldout",
        type=float,
        help="share of the images D never trains on, at least 64 of them (e.g. 0.05; default "
        "0, none): their reconstruction loss against the training images' shows D memorising",
    )
    g = t.add_argument_group(
        "small data: augmentation of what D sees (not in the paper; README: Training on small data)"
    )
    g.add_argument(
        "--augment",
        help="policies, comma-separated: translation, cutout, color (default: none). D then "
        "reconstructs T(v) for real and generated images alike, T drawn per image and use",
    )
    g.add_argument(
        "--augment-p",
        type=float,
        help="probability of applying each policy to an image (default 1; measured best on the "
        "built-in faces: 0.5 with translation,cutout)",
    )
    g.add_argument(
        "--heldout-every",
        type=int,
        help=f"steps between measurements of the held-out gap (default {d[1].heldout_every})",
    )
    g.add_argument(
        "--score-every",
        type=int,
        help="steps between scores of G on the held-out images (classifier Frechet distance "
        "for built-ins, else SWD); the best-scoring checkpoint is kept apart and exported by "
        "default (default 0: off)",
    )
    g = t.add_argument_group(
        "G_ema: a moving average of G's weights, saved beside G (not in the paper; the "
        "measurement: README, G_ema)"
    )
    g.add_argument(
        "--ema-kimg",
        type=float,
        help="half-life of G_ema in thousands of images (default 0: no G_ema)",
    )
    g.add_argument(
        "--ema-rampup",
        type=float,
        help="the half-life is at most this share of the images seen so far (default "
        f"{d[1].ema_rampup}; 0: no ramp-up)",
    )
    g.add_argument(
        "--ema-sweep",
        metavar="KIMG,...",
        help="more half-lives to keep beside G_ema, for measuring them (evaluate --generator "
        "G_ema:KIMG); none by default",
    )
    g = t.add_argument_group("run")
    g.add_argument("--out", type=Path, help="run directory to create")
    g.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint (optionally with a larger --steps)",
    )
    g.add_argument("--steps", type=int, help=f"total training steps (default {d[1].steps})")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument(
        "--seed",
        type=seed_flag,
        help=f"seed of weights, noise and data order (default {d[1].seed})",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic algorithms (bit-exact resume)",
    )
    g.add_argument(
        "--log-every", type=int, help=f"steps per metrics record (default {d[1].log_every})"
    )
    g.add_argument(
        "--sample-every", type=int, help=f"steps per sample grid (default {d[1].sample_every})"
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        help=f"steps per checkpoint (default {d[1].checkpoint_every})",
    )
    g.add_argument(
        "--keep-checkpoints", type=int, help=f"checkpoints kept (default {d[1].keep_checkpoints})"
    )
    g.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar; one line per record")
    g = t.add_argument_group(
        "speed (default: bf16 on CUDA and on CPUs with native bf16, float32 on other CPUs; "
        "channels_last and fused Adam everywhere; the run's config.json says which path it took)"
    )
    on_off = argparse.BooleanOptionalAction
    g.add_argument(
        "--amp",
        action=on_off,
        default=None,
        help="bf16 autocast for the networks; losses and k_t stay float32",
    )
    g.add_argument("--channels-last", action=on_off, default=None, help="NHWC memory layout")
    g.add_argument("--fused-adam", action=on_off, default=None, help="fused Adam kernels")
    g.add_argument(
        "--compile",
        action=on_off,
        default=None,
        help="torch.compile G and D (off by default: on the CPU it did not pay)",
    )
    g.add_argument(
        "--graph",
        action=on_off,
        default=None,
        help="the whole step as one CUDA graph (CUDA, one process; off by default until "
        "measured on a GPU)",
    )
    g = t.add_argument_group("model (paper Figure 1)")
    g.add_argument("--resolution", type=int, help=f"32, 64, 128 or 256 (default {d[0].resolution})")
    g.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="3 colour, 1 greyscale (default: 1 for fashion-mnist, else 3)",
    )
    g.add_argument("--filters", type=int, help=f"n, filters of the first scale (default {d[0].n})")
    g.add_argument("--h-dim", type=int, help=f"Nh, size of D's embedding (default {d[0].Nh})")
    g.add_argument("--z-dim", type=int, help=f"Nz, size of z (default {d[0].Nz})")
    g.add_argument("--convs-per-scale", type=int, help=f"(default {d[0].convs_per_scale})")
    g.add_argument("--skip", action="store_true", default=None, help="paper's skip connections")
    g.add_argument(
        "--vanishing-residual",
        action="store_true",
        default=None,
        help="paper's vanishing residuals (with --carry-steps)",
    )
    g.add_argument(
        "--carry-steps", type=int, help="steps over which the residual carry decays from 1 to 0"
    )
    g = t.add_argument_group("equilibrium and optimiser")
    g.add_argument("--gamma", type=float, help=f"diversity ratio in (0, 1] (default {d[1].gamma})")
    g.add_argument(
        "--lambda-k", type=float, help=f"gain of the k_t controller (default {d[1].lambda_k})"
    )
    g.add_argument("--k0", type=float, help=f"initial k_t (default {d[1].k_0})")
    g.add_argument(
        "--eta",
        type=int,
        help="norm of the auto-encoder loss, |v - D(v)|^eta: 1 (default) or 2",
    )
    g.add_argument("--batch-size", type=int, help=f"(default {d[1].batch_size})")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {d[1].lr})")
    g.add_argument("--beta1", type=float, help=f"(default {d[1].beta1})")
    g.add_argument("--beta2", type=float, help=f"(default {d[1].beta2})")
    g.add_argument(
        "--lr-window",
        type=int,
        help=f"halve lr when the mean M_global of a window of this many steps does not improve (default {d[1].lr_window})",
    )
    g.add_argument(
        "--lr-tolerance", type=float, help="relative improvement a window must show (default 0)"
    )
    g.add_argument(
        "--lr-min", type=float, help=f"floor of the learning rate (default {d[1].lr_min})"
    )

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
    given = {k: v for k, v in vars(args).items() if k in FLAGS}
    if args.resume is not None:
        from ..runs.run_dir import RunDir

        return config_from_flags(given, RunDir(args.resume).read_config())
    return config_from_flags(given)


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
            meta={"command": _command()},
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

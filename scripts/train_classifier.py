"""Train the small classifier whose feature space the offline metrics use (`evaluate`).

    python scripts/train_classifier.py --data fluent-faces --resolution 32
    python scripts/train_classifier.py --data fluent-faces --resolution 64
    python scripts/train_classifier.py --data fashion-mnist --resolution 32

Each writes began_core/assets/classifiers/<data>-<resolution>/ (config.json, model.safetensors,
README.md with the held-out accuracy, data, licence and this command; `--out` to change it).
Training uses the train part of a fixed held-out split (`began_core.evaluation.classifier.split_indices`:
Fashion-MNIST's official split; whole emoji concepts for fluent-faces) and reports accuracy on
the rest. Seeded (`--seed`) with a fixed thread count (`--threads`, default 1), so the same
command on the same machine writes the same weights. Per-dataset defaults (epochs, width,
augmentation) are in DEFAULTS below; any of them can be given on the command line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from began_core.data.sources import BUILTIN_DATASETS, open_dataset
from began_core.evaluation import classifier as C

ROOT = Path(__file__).resolve().parents[1]

# Fluent faces: 1,124 images, so many epochs of strong augmentation; Fashion-MNIST: 60,000
# photos, a few epochs of light augmentation (flips and small shifts) are enough.
DEFAULTS = {
    "fluent-faces": dict(epochs=80, width=32, augment=1.0, balance=0.5, batch_size=64),
    "fashion-mnist": dict(epochs=3, width=16, augment=0.5, balance=0.0, batch_size=64),
}
FALLBACK = dict(epochs=30, width=32, augment=1.0, balance=0.5, batch_size=64)
LICENCES = {
    "fluent-faces": "images MIT (Microsoft Fluent Emoji 3D via npm @lobehub/fluent-emoji-3d "
    "1.1.0), labels MIT (emoji-datasource 16.0.0)",
    "fashion-mnist": "MIT (Zalando Research; Debian package dataset-fashion-mnist)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="fluent-faces", help="a labelled built-in dataset")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, choices=(1, 3), help="default: 1 for fashion-mnist")
    p.add_argument(
        "--out", type=Path, help="default began_core/assets/classifiers/<data>-<resolution>"
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--width", type=int, help="filters of the first stage")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--augment", type=float, help="augmentation strength, 0 to 1")
    p.add_argument("--balance", type=float, help="class weights n_c^-balance")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed for repeatability)")
    p.add_argument(
        "--card-only", action="store_true", help="only rewrite README.md of an existing classifier"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    name = args.data.lower()
    settings = {**DEFAULTS.get(name, FALLBACK)}
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    channels = args.channels or (1 if name == "fashion-mnist" else 3)
    if name not in BUILTIN_DATASETS:
        print(f"error: {name!r} is not a built-in dataset", file=sys.stderr)
        return 2
    out = args.out or C.SHIPPED / C.classifier_name(name, args.resolution)
    if args.card_only:
        rewrite_card(out)
        return 0
    ds = open_dataset(name, args.resolution, channels)
    train_idx, test_idx, split = C.split_indices(name, ds, args.test_fraction, args.seed)
    print(f"{ds!r}: {len(train_idx)} train, {len(test_idx)} test ({split})", flush=True)

    start = time.time()
    model = C.train_classifier(
        ds,
        name,
        train_idx,
        test_idx,
        epochs=settings["epochs"],
        width=settings["width"],
        batch_size=settings["batch_size"],
        lr=args.lr,
        augment_strength=settings["augment"],
        balance=settings["balance"],
        seed=args.seed,
        log=lambda line: print(line, flush=True),
    )
    minutes = (time.time() - start) / 60
    test = C.accuracy_report(model, ds, test_idx)
    train = C.accuracy_report(model, ds, train_idx)
    test_counts = np.bincount(ds.labels[test_idx], minlength=len(ds.class_names))
    command = "python scripts/train_classifier.py " + " ".join(argv or sys.argv[1:])
    info = {
        "test_accuracy": round(test["accuracy"], 4),
        "test_balanced_accuracy": round(test["balanced_accuracy"], 4),
        "train_accuracy": round(train["accuracy"], 4),
        "chance_accuracy": round(1 / len(ds.class_names), 4),
        "majority_accuracy": round(float(test_counts.max() / test_counts.sum()), 4),
        "split": {
            "how": split,
            "test_fraction": args.test_fraction,
            "seed": args.seed,
            "train": len(train_idx),
            "test": len(test_idx),
        },
        "training": {**settings, "lr": args.lr, "seed": args.seed, "threads": args.threads},
        "minutes": round(minutes, 1),
        "hardware": f"{platform.machine()} CPU, {args.threads} thread(s)",
        "torch": torch.__version__,
        "data": ds.description,
        "licence": LICENCES.get(name, "see the dataset"),
        "command": command,
    }
    model.config.info.update(info)
    C.save_classifier(model, out)
    (out / "README.md").write_text(card(model.config, test_counts), encoding="utf-8")
    print(json.dumps({k: info[k] for k in list(info)[:5]}), f"-> {out}")
    return 0


def card(config: C.ClassifierConfig, test_counts: np.ndarray) -> str:
    i = config.info
    s = i["split"]
    rows = "\n".join(f"| {n} | {c} |" for n, c in zip(config.class_names, test_counts, strict=True))
    t = i["training"]
    widths = ", ".join(str(config.width * min(2**k, 4)) for k in range(config.num_stages))
    return f"""# Feature classifier: {config.dataset}, {config.resolution}x{config.resolution}

A small CNN trained by this project: {config.num_stages} stages of two conv3x3 + BatchNorm +
ReLU and a 2x2 max-pooling (widths {widths}), global average pooling to
{config.width * min(2 ** (config.num_stages - 1), 4)} features, dropout, and a linear layer to
{config.num_classes} classes. `python -m began_core evaluate` uses its features for the Frechet
distance and the diversity of generated images, and its predictions for class coverage and the
KL divergence of the class histogram. It is not an Inception network: its numbers compare
models with each other, not with published FIDs.

## Held-out accuracy

| | |
| --- | --- |
| test accuracy | {i["test_accuracy"]:.3f} |
| test balanced accuracy (mean recall per class) | {i["test_balanced_accuracy"]:.3f} |
| train accuracy (no augmentation) | {i["train_accuracy"]:.3f} |
| chance (uniform over {config.num_classes} classes) | {i["chance_accuracy"]:.3f} |
| always the largest test class | {i["majority_accuracy"]:.3f} |

Split: {s["how"]}; {s["train"]} training images, {s["test"]} test images. Test images per class:

| class | test images |
| --- | --- |
{rows}

## Data and licence

{i["data"]}.

Licence of the data: {i["licence"]}. These weights: MIT, like the project.

## Reproduce

```bash
{i["command"]}
```

{t["epochs"]} epochs, batch {t["batch_size"]}, AdamW with a one-cycle learning rate up to
{t["lr"]}, label smoothing 0.1, augmentation strength {t["augment"]}, class weights
n_c^-{t["balance"]}, seed {t["seed"]}; {i["minutes"]} min on {i["hardware"]}, torch {i["torch"]}.
Weights are stored in float16 (they compute in float32).
"""


def rewrite_card(directory: Path) -> None:
    """README.md again from a saved classifier's config.json, without training."""
    model = C.load_classifier(directory)
    cfg = model.config
    ds = open_dataset(cfg.dataset, cfg.resolution, cfg.channels)
    _, test_idx, _ = C.split_indices(
        cfg.dataset, ds, cfg.info["split"]["test_fraction"], cfg.info["split"]["seed"]
    )
    counts = np.bincount(ds.labels[test_idx], minlength=cfg.num_classes)
    (directory / "README.md").write_text(card(cfg, counts), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())

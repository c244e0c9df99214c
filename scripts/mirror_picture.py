"""The README's mirror-interpolation picture (paper Figure 4d), made by the code the explorer
runs: each shipped generator is inverted on real faces and on their mirror images
(`inversion.mirror_interpolation`, the explorer's defaults: 300 Adam steps, 4 starts), and
G is drawn along the path between the two latents.

Each row: the real face | G(z) ... G(z') along the path | the mirror image. The faces are
among the quarter that differ most from their mirror image. A generator that
learned faces turns the face round smoothly; one that memorised or collapsed jumps, or draws
the same face at both ends.

    python scripts/mirror_picture.py pretrained/fluent-faces-64-gamma0.5 --out docs/mirror.png
    python scripts/mirror_picture.py pretrained/fluent-faces-64-gamma0.{3,5,7} --heldout

With --heldout the faces come from the generator's own held-out split (the images its D
never trained on, recorded in training.json), so the picture shows faces G never saw.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from began_core.checkpoints import hub
from began_core.data.images import to_uint8, upscale
from began_core.data.sources import open_dataset
from began_core.explore import inversion
from began_core.training import heldout

ROOT = Path(__file__).resolve().parents[1]

GAP = 6  # white pixels between the real faces and the path, and between rows


def training_run(folder: Path) -> dict:
    path = folder / "training.json"
    if not path.is_file():
        raise SystemExit(f"{folder} has no training.json: pass an exported generator folder")
    return json.loads(path.read_text())["run"]


def faces(folder: Path, count: int, from_heldout: bool) -> tuple[str, torch.Tensor, list[int]]:
    """`count` real images, from the data or from the run's held-out split, among the quarter
    that differ most from their own mirror image (a symmetric face leaves the path nothing
    to show)."""
    run = training_run(folder)
    model, data = run["model"], run["data"]
    ds = open_dataset(data["source"], model["resolution"], model["channels"])
    pool = np.arange(len(ds))
    if from_heldout:
        share = data.get("heldout") or 0.0
        if share <= 0:
            raise SystemExit(f"{folder} was trained without a held-out split: drop --heldout")
        pool = heldout.split(len(ds), share, run["train"]["seed"])[1]
    x = ds.batch(pool)
    asymmetry = (x - x.flip(-1)).abs().mean(dim=(1, 2, 3))
    # Evenly through the most asymmetric quarter: the top few are colour variants of one emoji.
    top = asymmetry.argsort(descending=True)[: max(count, len(pool) // 4)]
    order = top[np.linspace(0, len(top) - 1, count).round().astype(int)].tolist()
    return data["source"], x[order], [int(pool[i]) for i in order]


def row(model, image: torch.Tensor, args: argparse.Namespace) -> np.ndarray:
    m = inversion.mirror_interpolation(
        model, image, steps=args.frames, invert_steps=args.iterations, restarts=args.starts
    )
    size = args.size
    scale = max(1, size // image.shape[-1])
    tiles = to_uint8(torch.cat([m.image[None], m.frames, m.flipped[None]]))
    tiles = upscale(tiles, scale)
    white = np.full((tiles.shape[1], GAP, tiles.shape[3]), 255, np.uint8)
    parts = [tiles[0], white, *tiles[1:-1], white, tiles[-1]]
    return np.concatenate(parts, axis=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("generators", type=Path, nargs="+", help="exported generator folders")
    p.add_argument("--faces", type=int, default=2, help="real faces per generator")
    p.add_argument("--frames", type=int, default=8, help="G along the path, ends included")
    p.add_argument("--iterations", type=int, default=300, help="Adam steps on z (explorer's)")
    p.add_argument("--starts", type=int, default=4, help="starts of the inversion (explorer's)")
    p.add_argument("--size", type=int, default=96, help="pixels per image (nearest neighbour)")
    p.add_argument("--heldout", action="store_true", help="faces from the held-out split")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "mirror.png")
    args = p.parse_args()

    torch.manual_seed(0)
    rows = []
    for folder in args.generators:
        model = hub.load(folder)
        source, images, picked = faces(folder, args.faces, args.heldout)
        for index, image in zip(picked, images, strict=True):
            rows.append(row(model, image, args))
            print(f"{folder.name}: {source} image {index}", file=sys.stderr)
    width = max(r.shape[1] for r in rows)
    gap = np.full((GAP, width, rows[0].shape[2]), 255, np.uint8)
    picture = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture.squeeze(-1) if picture.shape[-1] == 1 else picture).save(args.out)
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

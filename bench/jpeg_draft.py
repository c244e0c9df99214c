"""Does decoding JPEGs at reduced scale (PIL's `Image.draft`, libjpeg's DCT scaling) pay for
CelebA-shaped images at 64 px, and how far are its pixels from a full decode?

    python -m bench.jpeg_draft                 # 3,000 synthetic 178x218 JPEGs, 64 px
    python -m bench.jpeg_draft --n 500 --resolution 32

Makes N synthetic 178x218 JPEGs (smooth shapes, a face-like blob, fine texture, sensor-like
noise; quality 90, as CelebA's) in a temp folder, then decodes each the way
`began_core.data.images.load_image` does (CelebA box or centre square, Lanczos to the target)
in three ways, timed in turns image by image so that a busy machine slows them alike:

- full: no draft;
- load_image: the project's decoder as it stands (its draft keeps >= 2x the target side);
- draft 1x: a draft that may shrink down to the target side itself (JPEG scales 1/2, 1/4,
  1/8), then the same crop and resize;
- draft 1x (2x), fractional box: the same draft (or one keeping 2x the target), the crop box
  carried into the smaller image's coordinates unrounded, cropped and resized in one step.

Reports ms per image, the speed ratio to the full decode, and the pixel difference to the full
decode (mean and max absolute difference in 0..255 levels, the share of values off by more than
2 levels, PSNR). Writes bench/results/jpeg-draft.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFilter, features

from began_core.data.images import CELEBA_BOX, CELEBA_SIZE, load_image

RESULTS = Path(__file__).resolve().parent / "results" / "jpeg-draft"
CLOSE_MEAN, CLOSE_PSNR = 0.5, 45.0  # what "close to a full decode" means here


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n 178x218 JPEGs with CelebA's kinds of content: smooth background, a skin-toned
    ellipse with darker features, hair-like strokes, and fine noise (what JPEG keeps)."""
    rng = np.random.default_rng(seed)
    w, h = CELEBA_SIZE
    paths = []
    for i in range(n):
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(im)
        for _ in range(6):  # background blobs
            x, y = rng.integers(-40, w), rng.integers(-40, h)
            r = rng.integers(20, 90)
            d.ellipse((x, y, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        skin = tuple(int(v) for v in rng.normal((200, 150, 120), 25).clip(0, 255))
        cx, cy = w // 2 + rng.integers(-8, 9), 115 + rng.integers(-8, 9)
        d.ellipse((cx - 45, cy - 60, cx + 45, cy + 60), fill=skin)
        dark = tuple(int(v * 0.4) for v in skin)
        for ex in (-20, 20):  # eyes, then mouth
            d.ellipse((cx + ex - 8, cy - 20, cx + ex + 8, cy - 12), fill=dark)
        d.arc((cx - 20, cy + 15, cx + 20, cy + 35), 20, 160, fill=dark, width=3)
        hair = tuple(int(v) for v in rng.integers(0, 120, 3))
        for _ in range(40):  # hair: thin strokes, the fine detail a downscale must keep
            x0 = cx + rng.integers(-50, 50)
            d.line((x0, cy - 70, x0 + rng.integers(-15, 15), cy - 30), fill=hair, width=1)
        im = im.filter(ImageFilter.GaussianBlur(0.8))
        a = np.asarray(im, dtype=np.float32) + rng.normal(0, 4, (h, w, 3))
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def decode(path: Path, resolution: int, crop: bool, draft_to: float | None) -> np.ndarray:
    """load_image's steps for an RGB JPEG, with a draft down to `draft_to` x the target side
    (None: no draft)."""
    with Image.open(path) as im:
        if draft_to is not None:
            side = min(im.size) * ((CELEBA_BOX[2] - CELEBA_BOX[0]) / CELEBA_SIZE[0] if crop else 1)
            s = max(1.0, side / (draft_to * resolution))
            im.draft("RGB", (math.ceil(im.size[0] / s), math.ceil(im.size[1] / s)))
        w, h = im.size
        if crop:
            scale = (w / CELEBA_SIZE[0], h / CELEBA_SIZE[1]) * 2
            left, top, right, bottom = (
                round(v * f) for v, f in zip(CELEBA_BOX, scale, strict=True)
            )
            out = im.crop((left, top, right, bottom))
        else:
            side = min(w, h)
            out = im.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
        out = out.convert("RGB")
        if out.size != (resolution, resolution):
            flt = Image.Resampling.LANCZOS if out.size[0] > resolution else Image.Resampling.BICUBIC
            out = out.resize((resolution, resolution), flt)
        return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def decode_box(path: Path, resolution: int, crop: bool, draft_to: float) -> np.ndarray:
    """The draft, then the crop box in the drafted image's own (fractional) coordinates, cropped
    and resized in one `resize(box=...)`: rounding the box to whole pixels of a half-size image
    shifts the crop by up to one pixel of the full one."""
    with Image.open(path) as im:
        w0, h0 = im.size
        side = min(w0, h0) * ((CELEBA_BOX[2] - CELEBA_BOX[0]) / CELEBA_SIZE[0] if crop else 1)
        s = max(1.0, side / (draft_to * resolution))
        im.draft("RGB", (math.ceil(w0 / s), math.ceil(h0 / s)))
        fx, fy = im.size[0] / w0, im.size[1] / h0
        if crop:
            scale = (w0 / CELEBA_SIZE[0], h0 / CELEBA_SIZE[1]) * 2
            box = [round(v * f) for v, f in zip(CELEBA_BOX, scale, strict=True)]
        else:
            side0 = min(w0, h0)
            box = [(w0 - side0) // 2, (h0 - side0) // 2, (w0 + side0) // 2, (h0 + side0) // 2]
        box_f = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        out = im.convert("RGB").resize(
            (resolution, resolution), Image.Resampling.LANCZOS, box=box_f
        )
        return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def measure(paths: list[Path], resolution: int, crop: bool, passes: int) -> dict:
    variants = {
        "full": lambda p: decode(p, resolution, crop, None),
        "load_image": lambda p: load_image(p, resolution, 3, crop),
        "draft 1x": lambda p: decode(p, resolution, crop, 1.0),
        "draft 1x, fractional box": lambda p: decode_box(p, resolution, crop, 1.0),
        "draft 2x, fractional box": lambda p: decode_box(p, resolution, crop, 2.0),
    }
    seconds = {k: [0.0] * passes for k in variants}
    out = {k: np.empty((len(paths), 3, resolution, resolution), np.uint8) for k in variants}
    for r in range(passes):
        for i, p in enumerate(paths):
            for k, fn in variants.items():  # in turns, image by image
                t = time.perf_counter()
                out[k][i] = fn(p)
                seconds[k][r] += time.perf_counter() - t
    with Image.open(paths[0]) as im:
        im.draft("RGB", (math.ceil(im.size[0] / 2), math.ceil(im.size[1] / 2)))
        drafted = list(im.size)
    rows = {}
    full = out["full"].astype(np.int16)
    for k in variants:
        diff = np.abs(out[k].astype(np.int16) - full)
        mse = float(np.mean(diff.astype(np.float64) ** 2))
        best = min(seconds[k])  # the least disturbed pass
        rows[k] = {
            "ms_per_image": 1000 * best / len(paths),
            "speed_vs_full": min(seconds["full"]) / best,
            "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": int(diff.max()),
            "share_off_by_more_than_2": float((diff > 2).mean()),
            "psnr_db": None if mse == 0 else 10 * math.log10(255**2 / mse),
        }
    return {"crop": crop, "drafted_size_at_1x": drafted, "variants": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000, help="images (default 3000)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--passes", type=int, default=3, help="timed passes; the fastest counts")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = make_images(Path(tmp), args.n)
        made = time.perf_counter() - t
        cases = [measure(paths, args.resolution, crop, args.passes) for crop in (True, False)]
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),
        "images": args.n,
        "image_size": list(CELEBA_SIZE),
        "resolution": args.resolution,
        "passes": args.passes,
        "seconds_to_make_images": made,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(result))
    print(table(result))


def close(row: dict) -> bool:
    """Close enough to the full decode to replace it: the training data would not change."""
    return row["mean_abs_diff"] <= CLOSE_MEAN and (row["psnr_db"] or 99.0) >= CLOSE_PSNR


def table(result: dict) -> str:
    cases, n, res = result["cases"], result["images"], result["resolution"]
    w, h = result["image_size"]
    lines = [
        f"### JPEG decode at reduced scale (`Image.draft`), {n:,} synthetic {w}x{h} JPEGs to "
        f"{res} px ({result['cpu'] or 'unknown CPU'}), {result['date']}",
        "",
        f"Pillow {result['pillow']}, libjpeg {result['libjpeg']}; one process, the fastest of "
        f"{result['passes']} passes, variants timed in turns image by image. Differences are to "
        "the full decode, in 0..255 levels.",
        "",
    ]
    verdicts = []
    for case in cases:
        what = "CelebA box (128x128 at 25, 50)" if case["crop"] else "centre square (178x178)"
        lines += [
            f"{what}; a draft at 1x decodes at {case['drafted_size_at_1x'][0]}x"
            f"{case['drafted_size_at_1x'][1]}:",
            "",
            "| variant | ms/image | speed vs full | mean abs diff | max abs diff | "
            "values off by > 2 | PSNR |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for k, r in case["variants"].items():
            psnr = "identical" if r["psnr_db"] is None else f"{r['psnr_db']:.1f} dB"
            lines.append(
                f"| {k} | {r['ms_per_image']:.2f} | {r['speed_vs_full']:.2f}x | "
                f"{r['mean_abs_diff']:.2f} | {r['max_abs_diff']} | "
                f"{100 * r['share_off_by_more_than_2']:.1f}% | {psnr} |"
            )
        lines.append("")
        best = case["variants"]["draft 1x, fractional box"]
        verdicts.append(
            f"{what.split(' (')[0]}: {best['speed_vs_full']:.2f}x, mean difference "
            f"{best['mean_abs_diff']:.2f} levels, {best['psnr_db']:.1f} dB, "
            f"{'close' if close(best) else 'not close'}"
        )
    lines += [
        f"Close means a mean difference of at most {CLOSE_MEAN} of a level and a PSNR of at "
        f"least {CLOSE_PSNR:g} dB: the training data would not change. The draft at 1x with "
        "the box carried unrounded (a rounded box shifts the crop by up to a pixel of the full "
        "image, the 'draft 1x' rows) gives: "
        + "; ".join(verdicts)
        + ". "
        + (
            "It is close: enable it."
            if all(close(c["variants"]["draft 1x, fractional box"]) for c in cases)
            else "It is not close, so it stays off: a half-scale DCT decode is softer than "
            "Lanczos from the full image. `load_image` keeps its draft that leaves at least 2x "
            "the target side, which changes nothing for 178x218 images at 64 px (its rows equal "
            "the full decode) and pays only for photos several times larger than the target."
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Rebuild the shipped fluent-faces assets in began_core/assets/ from the npm registry.

    python scripts/build_fluent_faces.py                 # needs npm on PATH
    python scripts/build_fluent_faces.py --work DIR      # keep the downloaded packages in DIR

It runs ``npm pack`` for @lobehub/fluent-emoji-3d 1.1.0 (3,391 Fluent Emoji 3D images, 256x256
RGBA WebP, MIT) and emoji-datasource 16.0.0 (emoji.json: Unicode category and subcategory per
code point, MIT), then writes

- began_core/assets/fluent_emoji.json: the subcategory of every Fluent image (labels for the
  'fluent' dataset) and the face selection in tile order ('faces');
- began_core/assets/fluent_faces_64.png: those faces composited onto white and resized to
  64x64 with LANCZOS, as a lossless sprite sheet, 32 tiles a row.

The selection rule is ``began_core.data.builtin_data.is_face_subcategory``; the decoding is
``began_core.data.images.load_image``, the same as 'fluent-faces@full' uses, so both agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from began_core.data import builtin_data as bd
from began_core.data.images import load_image

ROOT = Path(__file__).resolve().parents[1]

COLUMNS = 32


def emoji_subcategories(emoji_json: Path) -> dict[str, tuple[str, str]]:
    """normalised code point -> (category, subcategory), skin-tone variants included."""
    table = {}
    for e in json.loads(emoji_json.read_text()):
        label = (e["category"], e["subcategory"])
        variants = [e, *(e.get("skin_variations") or {}).values()]
        for v in variants:
            for code in (v.get("unified"), v.get("non_qualified")):
                if code:
                    table.setdefault(bd.normalise_code(code), label)
    return table


def build(work: Path) -> None:
    print(f"npm pack {bd.FLUENT_NPM} and {bd.LABELS_NPM} into {work}")
    for spec, sub in ((bd.FLUENT_NPM, "fluent"), (bd.LABELS_NPM, "labels")):
        (work / sub).mkdir(parents=True, exist_ok=True)
        if not (work / sub / "package").is_dir():
            bd.extract_tgz(bd.npm_pack(spec, work / sub), work / sub)
    assets = work / "fluent" / "package" / "assets"
    table = emoji_subcategories(work / "labels" / "package" / "emoji.json")
    codes = sorted(p.stem for p in assets.glob("*.webp"))
    missing = [c for c in codes if bd.normalise_code(c) not in table]
    if missing:
        sys.exit(f"no emoji.json entry for {len(missing)} images: {missing[:10]}")
    labels = {c: table[bd.normalise_code(c)] for c in codes}
    subcategories = sorted(set(labels.values()))
    faces = [c for c in codes if bd.is_face_subcategory(*labels[c])]
    index = {
        "about": "Unicode subcategory of each image of the npm package "
        f"{bd.FLUENT_NPM} (MIT), from emoji.json of {bd.LABELS_NPM} (MIT); 'faces' lists the "
        f"images of {bd.FACES_SHEET}, a sprite sheet of {bd.TILE}x{bd.TILE} tiles composited "
        f"onto white, {COLUMNS} a row. Rebuilt by scripts/build_fluent_faces.py.",
        "fluent_package": bd.FLUENT_NPM,
        "labels_package": bd.LABELS_NPM,
        "licence": bd.FLUENT_LICENCE,
        "tile": bd.TILE,
        "columns": COLUMNS,
        "subcategories": [list(s) for s in subcategories],
        "emoji": {c: subcategories.index(labels[c]) for c in codes},
        "faces": faces,
    }
    rows = -(-len(faces) // COLUMNS)
    sheet = np.full((rows * bd.TILE, COLUMNS * bd.TILE, 3), 255, dtype=np.uint8)
    for i, c in enumerate(faces):
        tile = load_image(assets / f"{c}.webp", bd.TILE, 3).transpose(1, 2, 0)
        r, col = divmod(i, COLUMNS)
        sheet[r * bd.TILE : (r + 1) * bd.TILE, col * bd.TILE : (col + 1) * bd.TILE] = tile
    out = ROOT / "began_core" / "assets"
    out.mkdir(exist_ok=True)
    Image.fromarray(sheet).save(out / bd.FACES_SHEET, optimize=True)
    (out / bd.FLUENT_INDEX).write_text(json.dumps(index, separators=(",", ":")) + "\n")
    counts = Counter(labels[c][1] for c in faces)
    print(f"{len(codes)} images, {len(subcategories)} subcategories; {len(faces)} faces:")
    for sub, k in sorted(counts.items()):
        print(f"  {k:4d}  {sub}")
    for name in (bd.FACES_SHEET, bd.FLUENT_INDEX):
        print(f"wrote {name}: {(out / name).stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the npm packages (default: temp)")
    args = parser.parse_args()
    if args.work:
        build(args.work.resolve())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp))


if __name__ == "__main__":
    main()

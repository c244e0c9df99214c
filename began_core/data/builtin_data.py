"""The built-in datasets behind ``open_dataset``'s names (see ``data.BUILTIN_DATASETS``).

- ``fluent-faces``: 1,124 faces and head-and-shoulders people from Microsoft's Fluent Emoji 3D
  (npm ``@lobehub/fluent-emoji-3d`` 1.1.0, MIT), composited onto white and shipped in
  ``assets/`` as a 64x64 sprite sheet; labels are Unicode emoji subcategories taken from
  ``emoji.json`` of npm ``emoji-datasource`` 16.0.0 (MIT).  ``scripts/build_fluent_faces.py``
  rebuilds the assets.
- ``fluent-faces@full`` and ``fluent``: the same faces, or all 3,391 images, decoded from the npm
  package at up to 256x256; it is fetched with ``npm pack`` into the cache on first use.
- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` files (MIT).
- ``shapes``: procedural circles, squares and triangles.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from .cache import cache_dir
from .dataset import ImageDataset, decode_to_dataset, subset_indices
from .errors import DatasetError

BUILTIN_DATASETS: dict[str, str] = {
    "fluent-faces": "1,124 faces and people from Microsoft's Fluent Emoji 3D, colour, 18 labels; "
    "shipped 64x64 copy, no download (MIT)",
    "fluent-faces@full": "the same 1,124 faces rebuilt at up to 256x256 from the npm package "
    "@lobehub/fluent-emoji-3d 1.1.0; needs npm on first use (MIT)",
    "fluent": "all 3,391 Fluent Emoji 3D images, colour, 98 labels, up to 256x256; fetched with "
    "npm on first use (MIT)",
    "fashion-mnist": "70,000 real 28x28 greyscale clothing photos, 10 labels, padded to 32; "
    "from Debian's dataset-fashion-mnist (MIT)",
    "shapes": "512 procedural circles, squares and triangles, colour, 3 labels; generated "
    "instantly, for tests and demos (public domain)",
}


ASSETS = Path(__file__).resolve().parents[1] / "assets"
FACES_SHEET = "fluent_faces_64.png"  # sprite sheet, tiles in the order of index["faces"]
FLUENT_INDEX = "fluent_emoji.json"  # labels for every Fluent 3D image and the face selection
TILE = 64
FLUENT_SIZE = 256
FLUENT_NPM = "@lobehub/fluent-emoji-3d@1.1.0"
LABELS_NPM = "emoji-datasource@16.0.0"
FLUENT_LICENCE = (
    "MIT (Microsoft Fluent Emoji; packaged by LobeHub); labels from emoji-datasource, MIT"
)
# Unicode subcategories kept for fluent-faces: every face in "Smileys & Emotion" and the
# head-and-shoulders people (the full-body activity, sport, resting and family ones are left out).
FACE_PEOPLE = ("person", "person-gesture", "person-role", "person-fantasy")
FACE_SMILEYS = ("cat-face", "monkey-face")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SHAPE_CLASSES = ["circle", "square", "triangle"]


def is_face_subcategory(category: str, subcategory: str) -> bool:
    """The selection rule for fluent-faces."""
    if category == "Smileys & Emotion":
        return subcategory.startswith("face-") or subcategory in FACE_SMILEYS
    return category == "People & Body" and subcategory in FACE_PEOPLE


def normalise_code(name: str) -> str:
    """File stem or emoji.json code point to a comparable key: '0023-fe0f-20e3' -> '23-20e3'
    (no variation selector, no tag terminator, no leading zeros; Fluent names use both)."""
    parts = name.lower().replace("_", "-").split("-")
    return "-".join(p.lstrip("0") or "0" for p in parts if p not in ("fe0f", "e007f"))


@lru_cache(maxsize=1)
def fluent_index() -> dict:
    return json.loads((ASSETS / FLUENT_INDEX).read_text())


def open_builtin(name: str, resolution: int, channels: int, max_images: int | None) -> ImageDataset:
    if name == "fluent-faces":
        return _fluent_faces(resolution, channels, max_images)
    if name in ("fluent", "fluent-faces@full"):
        return _fluent_npm(name, resolution, channels, max_images)
    if name == "fashion-mnist":
        return _fashion_mnist(resolution, channels, max_images)
    if name == "shapes":
        arr, labels = make_shapes(resolution, channels)
        keep = subset_indices(len(arr), max_images or len(arr))
        desc = f"{len(keep)} procedural shapes (circles, squares, triangles; generated, no licence)"
        return ImageDataset(
            arr[keep], source=name, description=desc, labels=labels[keep], class_names=SHAPE_CLASSES
        )
    raise DatasetError(f"unknown built-in dataset {name!r}")


def _labelled(codes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Subcategory labels (and their sorted names) for Fluent file stems."""
    index = fluent_index()
    subs = [
        index["subcategories"][index["emoji"][c]][1] if c in index["emoji"] else "other"
        for c in codes
    ]
    names = sorted(set(subs))
    lookup = {s: i for i, s in enumerate(names)}
    return np.array([lookup[s] for s in subs], dtype=np.int64), names


def resize_stack(u8: np.ndarray, resolution: int) -> np.ndarray:
    """Resize (N, C, S, S) uint8 images to (N, C, R, R): LANCZOS down, BICUBIC up."""
    n, c, s, _ = u8.shape
    if s == resolution:
        return u8
    out = np.empty((n, c, resolution, resolution), dtype=np.uint8)
    flt = Image.Resampling.LANCZOS if resolution < s else Image.Resampling.BICUBIC
    for i in range(n):
        im = Image.fromarray(u8[i, 0] if c == 1 else u8[i].transpose(1, 2, 0))
        a = np.asarray(im.resize((resolution, resolution), flt))
        out[i] = a[None] if c == 1 else a.transpose(2, 0, 1)
    return out


def _fluent_faces(resolution: int, channels: int, max_images: int | None) -> ImageDataset:
    if resolution > TILE:
        raise DatasetError(
            f"the shipped 'fluent-faces' copy is {TILE}x{TILE}, so resolution {resolution} is "
            f"not available from it. Use 'fluent-faces@full', which rebuilds the same images "
            f"from the npm package {FLUENT_NPM} at up to {FLUENT_SIZE}x{FLUENT_SIZE} (needs npm)."
        )
    codes = fluent_index()["faces"]
    with Image.open(ASSETS / FACES_SHEET) as sheet:
        a = np.asarray(sheet.convert("L" if channels == 1 else "RGB"))
    a = a.reshape(a.shape[0] // TILE, TILE, a.shape[1] // TILE, TILE, channels)
    tiles = a.transpose(0, 2, 4, 1, 3).reshape(-1, channels, TILE, TILE)[: len(codes)]
    labels, names = _labelled(codes)
    keep = subset_indices(len(codes), max_images or len(codes))
    arr = resize_stack(np.ascontiguousarray(tiles[keep]), resolution)
    desc = (
        f"{len(arr)} Fluent Emoji 3D faces and people ({FLUENT_NPM}, shipped {TILE}x{TILE}"
        f" copy; {FLUENT_LICENCE})"
    )
    return ImageDataset(
        arr, source="fluent-faces", description=desc, labels=labels[keep], class_names=names
    )


def npm_pack(spec: str, dest: str | os.PathLike) -> Path:
    """``npm pack SPEC`` into ``dest``; returns the .tgz.  DatasetError if npm is missing or fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetError(
            f"downloading {spec} needs npm, which is not installed. Install Node.js and npm "
            "(e.g. `apt-get install npm`), or use 'fluent-faces', which ships with began_core."
        )
    try:
        subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(dest)],
            cwd=dest,
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        err = (getattr(e, "stderr", None) or str(e)).strip()[-600:]
        raise DatasetError(
            f"`npm pack {spec}` failed ({err}). Check the network and npm's registry settings, "
            "or use 'fluent-faces', which ships with began_core (64x64)."
        ) from e
    tgz = sorted(Path(dest).glob("*.tgz"))
    if not tgz:
        raise DatasetError(f"`npm pack {spec}` wrote no .tgz into {dest}")
    return tgz[0]


def extract_tgz(tgz: Path, dest: Path) -> None:
    with tarfile.open(tgz) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses links and paths outside dest
            tar.extractall(dest, filter="data")
        else:  # Python before 3.10.12 has no filters
            tar.extractall(dest)


def _fluent_assets() -> Path:
    """The extracted ``package/assets`` of the Fluent npm package, fetched once into the cache."""
    root = cache_dir() / "npm" / FLUENT_NPM.split("/")[-1].replace("@", "-")
    assets = root / "package" / "assets"
    if assets.is_dir():
        return assets
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        extract_tgz(npm_pack(FLUENT_NPM, tmp), Path(tmp) / "x")
        try:
            os.replace(Path(tmp) / "x", root)
        except OSError:  # another process got there first
            if not assets.is_dir():
                raise
    return assets


def _fluent_npm(name: str, resolution: int, channels: int, max_images: int | None) -> ImageDataset:
    if resolution > FLUENT_SIZE:
        raise DatasetError(
            f"the Fluent 3D images are {FLUENT_SIZE}x{FLUENT_SIZE}: ask for "
            f"resolution {FLUENT_SIZE} or less, not {resolution}"
        )
    assets = _fluent_assets()
    if name == "fluent":
        codes = sorted(p.stem for p in assets.glob("*.webp"))
    else:
        codes = fluent_index()["faces"]
    labels, names = _labelled(codes)
    keep = subset_indices(len(codes), max_images or len(codes))
    jobs = [(None, str(assets / f"{codes[i]}.webp")) for i in keep]
    key = dict(
        kind="builtin",
        name=name,
        package=FLUENT_NPM,
        resolution=resolution,
        channels=channels,
        max_images=max_images,
    )
    what = "Fluent Emoji 3D images" if name == "fluent" else "Fluent Emoji 3D faces and people"
    return decode_to_dataset(
        jobs,
        key,
        source=name,
        labels=labels[keep],
        class_names=names,
        description=f"{what} ({FLUENT_NPM}; {FLUENT_LICENCE})",
    )


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist(resolution: int, channels: int, max_images: int | None) -> ImageDataset:
    d = Path(os.environ.get("BEGAN_FASHION_MNIST", FASHION_MNIST_DIR))
    names = [
        f"{s}-{k}-idx{n}-ubyte.gz"
        for s in ("train", "t10k")
        for k, n in (("images", 3), ("labels", 1))
    ]
    missing = [n for n in names if not (d / n).exists()]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST files not found in {d} (missing {', '.join(missing)}). Install them "
            "with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
            "BEGAN_FASHION_MNIST to a folder holding the four *-ubyte.gz files."
        )
    images = np.concatenate([_read_idx(d / names[0]), _read_idx(d / names[2])])
    labels = np.concatenate([_read_idx(d / names[1]), _read_idx(d / names[3])]).astype(np.int64)
    keep = subset_indices(len(images), max_images or len(images))
    padded = np.pad(images[keep], ((0, 0), (2, 2), (2, 2)))[:, None]  # background is 0 (black)
    arr = resize_stack(padded, resolution)
    if channels == 3:
        arr = np.repeat(arr, 3, axis=1)
    desc = (
        f"{len(arr)} Fashion-MNIST photos, train + test, 28x28 padded to 32 (Zalando, "
        "MIT; Debian dataset-fashion-mnist)"
    )
    return ImageDataset(
        arr,
        source="fashion-mnist",
        description=desc,
        labels=labels[keep],
        class_names=FASHION_CLASSES,
    )


def make_shapes(resolution: int, channels: int = 3, n: int = 512, seed: int = 0):
    """n deterministic anti-aliased circles / squares / triangles on plain backgrounds.

    Returns (uint8 (n, C, R, R), int64 labels: 0 circle, 1 square, 2 triangle)."""
    rng = np.random.default_rng(seed)
    kinds = np.arange(n) % 3
    rng.shuffle(kinds)
    cx, cy = rng.uniform(0.35, 0.65, (2, n))
    size = rng.uniform(0.18, 0.32, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    bg, fg = rng.uniform(0, 1, (2, n, 3))
    lum = np.array([0.299, 0.587, 0.114])
    low = np.abs((fg - bg) @ lum) < 0.3  # keep the shape visible: push it away from the background
    fg[low] = np.where(((bg[low] @ lum) > 0.5)[:, None], fg[low] * 0.3, 0.7 + 0.3 * fg[low])
    ss = 4 if resolution <= 64 else 2 if resolution <= 128 else 1  # supersampling
    m = resolution * ss
    grid = (np.arange(m, dtype=np.float32) + 0.5) / m
    cover = np.empty((n, resolution, resolution), dtype=np.float32)
    for k in range(3):
        idx = np.nonzero(kinds == k)[0]
        for chunk in np.array_split(idx, max(1, len(idx) * m * m // 4_000_000)):
            dx = grid[None, None, :] - cx[chunk, None, None].astype(np.float32)
            dy = grid[None, :, None] - cy[chunk, None, None].astype(np.float32)
            c, s = np.cos(angle[chunk])[:, None, None], np.sin(angle[chunk])[:, None, None]
            x, y, r = c * dx + s * dy, c * dy - s * dx, size[chunk, None, None]
            if k == 0:
                inside = x * x + y * y <= r * r
            elif k == 1:
                inside = np.maximum(np.abs(x), np.abs(y)) <= 0.8 * r
            else:  # equilateral triangle, circumradius r
                inside = np.ones_like(x, dtype=bool)
                for t in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
                    inside &= x * np.cos(t) + y * np.sin(t) <= r / 2
            cov = inside.reshape(len(chunk), resolution, ss, resolution, ss).mean(axis=(2, 4))
            cover[chunk] = cov
    img = bg[:, :, None, None] * (1 - cover[:, None]) + fg[:, :, None, None] * cover[:, None]
    if channels == 1:
        img = (img * lum[None, :, None, None]).sum(axis=1, keepdims=True)
    return np.round(img * 255).astype(np.uint8), kinds.astype(np.int64)

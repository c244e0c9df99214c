"""Opening a dataset for BEGAN: a built-in name, a folder of images or a .zip of them.

``open_dataset(source, resolution, channels)`` returns an :class:`ImageDataset` (dataset.py)
whose ``batch`` turns rows into float32 tensors in [-1, 1]. Built-in names are listed in
``BUILTIN_DATASETS`` (builtin_data.py); folders and zips are scanned here, labelled by their
sub-folders, and decoded by ``dataset.decode_to_dataset`` (cached when they are big).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from .builtin_data import BUILTIN_DATASETS, open_builtin
from .dataset import ImageDataset, decode_to_dataset, subset_indices
from .errors import DatasetError
from .images import CELEBA_SIZE, MAX_BYTES

__all__ = ["BUILTIN_DATASETS", "DatasetError", "ImageDataset", "open_dataset", "subset_indices"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_MIN_FILES = 1000  # cache folders / zips with at least this many files as .npy
# Zip bombs: beside each image's own limit (images.MAX_BYTES), what all the images of a zip
# inflate to, and how many times over. Images barely deflate (PNG, JPEG and WebP are compressed
# already; even a BMP of a flat colour rarely reaches 100 times), while a bomb of zeros inflates
# about 1,000 times, and one whose directory entries share a member far more.
MAX_ZIP_TOTAL = 16 * 2**30
MAX_ZIP_RATIO = 100
ZIP_RATIO_FROM = 64 * 2**20  # smaller zips may deflate as well as they like: they are small


def _positive_int(value, what: str, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{what} must be a positive integer{example}, got {value!r}")


def open_dataset(
    source: str | os.PathLike,
    resolution: int,
    channels: int = 3,
    *,
    celeba_crop: bool | None = None,
    max_images: int | None = None,
) -> ImageDataset:
    """Open a built-in dataset (see ``BUILTIN_DATASETS``), a folder of images or a .zip of images.

    Images are composited onto white, centre-cropped to a square (or given the CelebA crop) and
    resized to ``resolution``.  ``max_images`` keeps a fixed, evenly spread random subset.
    A folder whose images sit in two or more sub-folders gets the sub-folder names as labels.
    Built-in names win over same-named paths: write ``./shapes`` for a folder called shapes.
    """
    _positive_int(resolution, "resolution", " such as 32 or 64")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DatasetError(f"channels must be 1 (greyscale) or 3 (colour), got {channels!r}")
    if max_images is not None:
        _positive_int(max_images, "max_images", " or None")
    resolution, name = int(resolution), os.fspath(source)
    if name.lower() in BUILTIN_DATASETS:
        return open_builtin(name.lower(), resolution, channels, max_images)
    kind, path, zip_path, files = list_images(name)
    labels, class_names = _folder_labels(files)
    if max_images is not None and max_images < len(files):
        keep = subset_indices(len(files), max_images)
        files = [files[i] for i in keep]
        labels = None if labels is None else labels[keep]
    if celeba_crop is None:
        celeba_crop = _looks_like_celeba(path, files, zip_path)
    # What the images are made from and how; decode_to_dataset adds every file's size, mtime and
    # ctime (a zip's members' CRCs), so that no changed, added or removed file reuses the cache.
    key = dict(
        kind=kind,
        path=str(path.resolve()),
        resolution=resolution,
        channels=channels,
        crop=bool(celeba_crop),
        max_images=max_images,
    )
    desc = f"images from the {kind} {path.name}" + (", CelebA crop" if celeba_crop else "")
    jobs = [(zip_path, f) if zip_path else (None, str(path / f)) for f in files]
    return decode_to_dataset(
        jobs,
        key,
        cache=len(files) >= CACHE_MIN_FILES,
        source=name,
        description=desc,
        labels=labels,
        class_names=class_names,
    )


def list_images(source: str | os.PathLike) -> tuple[str, Path, str | None, list[str]]:
    """The image files of a folder or .zip, as `open_dataset` would decode them, without
    decoding any: (kind "folder" or "zip", path, the zip's resolved path or None, sorted names).
    A missing path, a file that is no zip, a hostile zip or one without images raise
    DatasetError, so that a quick check (the dashboard's, before launching) refuses exactly
    what training would."""
    name = os.fspath(source)
    path = Path(name).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(name.lower(), BUILTIN_DATASETS, n=1)
        raise DatasetError(
            f"dataset {name!r} not found: no such file or folder ({path.absolute()})."
            + (f" Did you mean {close[0]!r}?" if close else "")
            + f" Give a folder or .zip of images, or a built-in name: {', '.join(BUILTIN_DATASETS)}."
        )
    zip_path = None
    if path.is_dir():
        files = _scan_folder(path)
    elif zipfile.is_zipfile(path):
        zip_path = str(path.resolve())
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
        _check_members(path, members)
        files = sorted(m.filename for m in members if _is_image_name(m.filename))
    else:
        raise DatasetError(
            f"{name!r} is a file but not a .zip: give a folder of images, or a .zip of them."
        )
    kind = "zip" if zip_path else "folder"
    if not files:
        raise DatasetError(
            f"no images found in the {kind} {str(path)!r}: searched recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case). Point to a {kind} that contains images."
        )
    return kind, path, zip_path, files


def _is_image_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip with member names that climb out of it, or a zip bomb (an image, or all of
    them, too large or inflating too many times over), from its directory, before decoding."""
    for m in members:
        name = m.filename.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/") or ":" in name.split("/")[0]:
            raise DatasetError(
                f"refusing the zip {str(path)!r}: its member {m.filename!r} names a path outside "
                "the archive. Re-create the zip from a plain folder of images."
            )
        if m.file_size > MAX_BYTES and _is_image_name(m.filename):  # zipfile never inflates
            # a member past its stated size, so the zip's directory is enough to refuse it
            raise DatasetError(
                f"refusing the zip {str(path)!r}: its member {m.filename!r} would inflate to "
                f"{m.file_size:,} bytes from {m.compress_size:,} (a zip bomb?). Images of at "
                f"most {MAX_BYTES // 2**20} MB each are accepted."
            )
    images = [m for m in members if _is_image_name(m.filename)]
    total, packed = sum(m.file_size for m in images), sum(m.compress_size for m in images)
    if total > MAX_ZIP_TOTAL:
        raise DatasetError(
            f"refusing the zip {str(path)!r}: its images would inflate to {total:,} bytes in "
            f"all, from a file of {path.stat().st_size:,} (a zip bomb?). At most {MAX_ZIP_TOTAL // 2**30} GB of images "
            "in one zip are accepted: split it, or unpack it and give the folder."
        )
    if total > ZIP_RATIO_FROM and total > MAX_ZIP_RATIO * packed:
        ratio = total / max(packed, 1)
        raise DatasetError(
            f"refusing the zip {str(path)!r}: its images would inflate {ratio:,.0f} "
            f"times, to {total:,} bytes from {packed:,} (a zip bomb?). Image files compress "
            f"far less than {MAX_ZIP_RATIO} times: re-create the zip from the image files."
        )


def _scan_folder(root: Path) -> list[str]:
    found = []
    inside = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        for fn in filenames:
            if _is_image_name(fn):
                found.append(fn if rel == "." else os.path.join(rel, fn))
                link = Path(dirpath) / fn
                if link.is_symlink() and not _resolves_inside(link, inside):
                    raise DatasetError(
                        f"refusing the folder {str(root)!r}: {found[-1]!r} is a symbolic link "
                        "to a file outside it. Copy the images into the folder instead."
                    )
    return sorted(found)


def _resolves_inside(link: Path, inside: Path) -> bool:
    """True for a link to a file inside the folder, and for one that leads nowhere (a loop, or
    to no file): that one is kept, and the decode skips and counts it with its reason."""
    try:
        return link.resolve().is_relative_to(inside)
    except (OSError, RuntimeError):  # "Symlink loop": RuntimeError before Python 3.13
        return True


def _folder_labels(files: list[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Class labels from first-level sub-folders (ImageFolder style), when there are 2 or more."""
    parts = [f.replace("\\", "/").split("/") for f in files]
    while all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # strip a common wrapper folder
    if any(len(p) < 2 for p in parts) or len({p[0] for p in parts}) < 2:
        return None, None
    names = sorted({p[0] for p in parts})
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[p[0]] for p in parts], dtype=np.int64), names


def _looks_like_celeba(path: Path, files: list[str], zip_path: str | None) -> bool:
    """True for a folder or zip called img_align_celeba, or when (almost) all are 178x218."""
    tops = {f.replace("\\", "/").split("/")[0] for f in files}
    if "img_align_celeba" in (path.name, path.stem) or tops == {"img_align_celeba"}:
        return True
    sample = [files[i] for i in np.linspace(0, len(files) - 1, min(32, len(files))).astype(int)]
    hits = 0
    with zipfile.ZipFile(zip_path) if zip_path else contextlib.nullcontext() as zf:
        for f in sample:
            try:
                with Image.open(zf.open(f) if zf else path / f) as im:
                    hits += im.size == CELEBA_SIZE
            except Exception:
                pass
    return hits >= 0.9 * len(sample)

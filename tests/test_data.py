"""Tests for began_core.data.sources: built-in datasets, folders, zips, CelebA crop, bad input, cache."""

from __future__ import annotations

import logging
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from began_core.data import builtin_data, cache, decoding, sources
from began_core.data.sources import BUILTIN_DATASETS, DatasetError, ImageDataset, open_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BEGAN_CACHE", str(tmp_path / "cache"))


def save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **kw)
    return path


def solid(h: int, w: int, rgb, alpha: int | None = None) -> np.ndarray:
    a = np.empty((h, w, 3 if alpha is None else 4), dtype=np.uint8)
    a[..., :3] = rgb
    if alpha is not None:
        a[..., 3] = alpha
    return a


def check_tensor(t: torch.Tensor, shape) -> None:
    assert t.dtype == torch.float32 and tuple(t.shape) == tuple(shape)
    assert t.min() >= -1.0 and t.max() <= 1.0


# --------------------------------------------------------------------------- built-ins


def test_builtin_names_have_licences():
    assert {"fluent-faces", "fluent", "fashion-mnist", "shapes"} <= set(BUILTIN_DATASETS)
    for name in ("fluent-faces", "fluent", "fashion-mnist"):
        assert "MIT" in BUILTIN_DATASETS[name]


def test_shapes_fast_deterministic_labelled():
    t0 = time.perf_counter()
    ds = open_dataset("shapes", 32)
    assert time.perf_counter() - t0 < 1.0
    assert isinstance(ds, ImageDataset) and len(ds) == 512
    assert (ds.resolution, ds.channels, ds.skipped) == (32, 3, 0)
    u8 = ds.uint8()
    assert u8.shape == (512, 3, 32, 32) and u8.dtype == np.uint8
    assert ds.class_names == ["circle", "square", "triangle"]
    assert ds.labels.dtype == np.int64 and set(ds.labels.tolist()) == {0, 1, 2}
    assert np.array_equal(u8, open_dataset("shapes", 32).uint8())
    # each image: a plain background (the corner colour) and a visibly different shape
    diff = np.abs(u8.astype(int) - u8[:, :, :1, :1]).sum(1) > 60
    assert diff.mean(axis=(1, 2)).min() > 0.03 and diff[:, [0, -1], :].mean() < 0.01
    grey = open_dataset("shapes", 16, channels=1)
    assert grey.uint8().shape == (512, 1, 16, 16) and grey.channels == 1


def test_batch_and_getitem_scale_uint8_to_minus_one_one():
    ds = open_dataset("shapes", 8)
    idx = [3, 0, 511, 3]
    for indices in (idx, torch.tensor(idx), np.array(idx)):
        b = ds.batch(indices)
        check_tensor(b, (4, 3, 8, 8))
        expected = torch.from_numpy(ds.uint8()[idx].astype(np.float32)) / 127.5 - 1
        assert torch.allclose(b, expected)
    check_tensor(ds[5], (3, 8, 8))
    assert torch.equal(ds[5], ds.batch([5])[0])
    assert ds.batch([0]).min() >= -1 and torch.equal(ds.batch([]), torch.empty(0, 3, 8, 8))


def test_max_images_keeps_a_fixed_subset_with_labels():
    a = open_dataset("shapes", 8, max_images=100)
    b = open_dataset("shapes", 8, max_images=100)
    assert len(a) == 100 and len(a.labels) == 100
    assert np.array_equal(a.uint8(), b.uint8())


@pytest.mark.parametrize("resolution", [32, 64])
def test_fluent_faces_from_shipped_asset(resolution, monkeypatch):
    monkeypatch.setattr(builtin_data.shutil, "which", lambda name: None)  # no npm needed
    ds = open_dataset("fluent-faces", resolution)
    assert 1000 <= len(ds) <= 1200
    u8 = ds.uint8()
    assert u8.shape == (len(ds), 3, resolution, resolution)
    assert ds.labels is not None and len(ds.labels) == len(ds)
    assert ds.labels.min() == 0 and ds.labels.max() == len(ds.class_names) - 1
    assert "person" in ds.class_names and any(c.startswith("face-") for c in ds.class_names)
    assert "MIT" in ds.description
    corners = u8[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.median(corners) == 255  # composited onto white
    assert u8.reshape(len(ds), -1).std(axis=1).min() > 10  # nothing blank
    check_tensor(ds.batch(range(16)), (16, 3, resolution, resolution))


def test_fluent_faces_grey_and_too_big():
    grey = open_dataset("fluent-faces", 32, channels=1)
    assert grey.uint8().shape[1:] == (1, 32, 32)
    with pytest.raises(DatasetError, match=r"64x64.*fluent-faces@full"):
        open_dataset("fluent-faces", 128)


def test_fluent_without_npm_says_so(monkeypatch):
    monkeypatch.setattr(builtin_data.shutil, "which", lambda name: None)
    with pytest.raises(DatasetError, match=r"npm.*fluent-faces"):
        open_dataset("fluent", 32)


FASHION = builtin_data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz"


@pytest.mark.skipif(not FASHION.exists(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist():
    ds = open_dataset("fashion-mnist", 32, channels=1)
    assert len(ds) == 70_000 and ds.uint8().shape == (70_000, 1, 32, 32)
    assert len(ds.class_names) == 10 and set(np.unique(ds.labels)) == set(range(10))
    u8 = ds.uint8()
    assert (u8[:, :, :2, :] == 0).all()  # 28 -> 32 padding with the black background
    assert u8.max() == 255
    rgb = open_dataset("fashion-mnist", 16, channels=3, max_images=50)
    assert rgb.uint8().shape == (50, 3, 16, 16)
    assert (rgb.uint8()[:, 0] == rgb.uint8()[:, 2]).all()


def test_fashion_mnist_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BEGAN_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        open_dataset("fashion-mnist", 32)


# --------------------------------------------------------------------------- folders and zips


def make_folder(root: Path) -> Path:
    """Red opaque PNG, half-transparent blue RGBA, green JPEG in a sub-sub-folder, wide BMP and
    WebP with upper-case extensions, and a palette PNG with a transparent colour."""
    save(root / "red.png", solid(20, 20, (255, 0, 0)))
    clear = solid(20, 20, (0, 0, 255), alpha=255)
    clear[:, :10, 3] = 0  # left half fully transparent -> white
    save(root / "a" / "alpha.png", clear)
    save(root / "a" / "b" / "green.JPG", solid(24, 24, (0, 255, 0)))
    wide = solid(20, 40, (255, 255, 0))
    wide[:, :10] = (0, 0, 0)  # only outside the centre crop
    wide[:, 30:] = (0, 0, 0)
    save(root / "wide.BMP", wide)
    save(root / "c" / "pic.WebP", solid(20, 20, (0, 0, 255)), lossless=True)
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 255, 0, 255] + [0] * 762)
    pal.save(root / "palette.png", transparency=1)  # all transparent -> white
    (root / "notes.txt").write_text("not an image")
    return root


def by_name(ds: ImageDataset, files: list[str], name: str) -> np.ndarray:
    return ds.uint8()[files.index(name)]


def test_folder_recursive_alpha_on_white_grey_and_crop(tmp_path):
    root = make_folder(tmp_path / "imgs")
    ds = open_dataset(root, 8)
    files = sources._scan_folder(root)
    assert len(ds) == len(files) == 6 and ds.skipped == 0 and ds.labels is None
    assert ds.uint8().shape == (6, 3, 8, 8) and ds.uint8().dtype == np.uint8
    red = by_name(ds, files, "red.png")
    assert (red[0] == 255).all() and (red[1:] == 0).all()
    alpha = by_name(ds, files, str(Path("a") / "alpha.png")).astype(int)
    assert (alpha[:, :, 0] == 255).all()  # transparent left edge is white
    assert (alpha[:2, :, -1] < 5).all() and (alpha[2, :, -1] > 250).all()  # blue right edge
    assert (by_name(ds, files, "palette.png") == 255).all()
    wide = by_name(ds, files, "wide.BMP").astype(int)
    assert (wide[:2] > 250).all() and (wide[2] < 5).all()  # centre square: yellow only
    green = by_name(ds, files, str(Path("a") / "b" / "green.JPG")).astype(int)
    assert (green[1] > 240).all() and (green[[0, 2]] < 20).all()
    grey = open_dataset(root, 8, channels=1)
    assert grey.uint8().shape == (6, 1, 8, 8)
    assert abs(int(by_name(grey, files, "red.png")[0, 4, 4]) - 76) <= 1  # ITU-R 601 luma of red
    check_tensor(grey.batch([0, 1]), (2, 1, 8, 8))


def test_zip_matches_folder(tmp_path):
    root = make_folder(tmp_path / "imgs")
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, Path("imgs") / f.relative_to(root))
        zf.writestr("__MACOSX/._red.png", b"resource fork")
    from_zip, from_dir = open_dataset(zpath, 8), open_dataset(root, 8)
    assert len(from_zip) == len(from_dir) == 6
    assert np.array_equal(from_zip.uint8(), from_dir.uint8())


def test_subfolders_become_labels(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        for i in range(3):
            save(tmp_path / "pets" / cls / f"{i}.png", solid(10, 10, colour))
    ds = open_dataset(tmp_path / "pets", 4)
    assert ds.class_names == ["cats", "dogs"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert (ds.uint8()[ds.labels == 1][:, 2] == 255).all()


def celeba_like() -> np.ndarray:
    """178x218 grey image with the BEGAN crop box (25, 50)-(153, 178) painted: red top-left
    quarter, green bottom-right quarter, white elsewhere inside the box."""
    img = solid(218, 178, (90, 90, 90))
    img[50:178, 25:153] = 255
    img[50:114, 25:89] = (255, 0, 0)
    img[114:178, 89:153] = (0, 255, 0)
    return img


def test_celeba_crop_box(tmp_path):
    save(tmp_path / "faces" / "000001.png", celeba_like())
    save(tmp_path / "faces" / "000002.png", celeba_like())
    ds = open_dataset(tmp_path / "faces", 16)  # auto: all images are 178x218
    assert "CelebA" in ds.description
    img = ds.uint8()[0].astype(int)
    red, green = np.array([255, 0, 0])[:, None, None], np.array([0, 255, 0])[:, None, None]
    assert (abs(img[:, :5, :5] - red) <= 2).all() and (abs(img[:, -5:, -5:] - green) <= 2).all()
    assert (img[:, :5, -5:] >= 253).all() and (img[:, -5:, :5] >= 253).all()
    full = open_dataset(tmp_path / "faces", 128).uint8()[0]  # the 128x128 box itself, unscaled
    assert np.array_equal(full.transpose(1, 2, 0), celeba_like()[50:178, 25:153])
    plain = open_dataset(tmp_path / "faces", 16, celeba_crop=False).uint8()[0].astype(int)
    assert (plain[:, 0, 0] == 90).all()  # centre square crop keeps the grey margin
    forced = open_dataset(tmp_path / "faces", 16, celeba_crop=True)
    assert np.array_equal(forced.uint8(), ds.uint8())


def test_celeba_folder_name_turns_crop_on(tmp_path):
    save(tmp_path / "img_align_celeba" / "1.png", solid(64, 64, (0, 0, 0)))
    assert "CelebA" in open_dataset(tmp_path / "img_align_celeba", 8).description
    assert (
        "CelebA"
        not in open_dataset(tmp_path / "img_align_celeba", 8, celeba_crop=False).description
    )


# --------------------------------------------------------------------------- bad input


def write_corrupt(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.png").write_bytes(b"this is not a png at all")
    save(folder / "whole.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3)))
    raw = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(raw[: len(raw) // 2])


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    write_corrupt(tmp_path / "mixed")
    save(tmp_path / "mixed" / "ok1.png", solid(8, 8, (1, 2, 3)))
    save(tmp_path / "mixed" / "ok2.png", solid(8, 8, (4, 5, 6)))
    with pytest.warns(UserWarning, match=r"skipped 2 of 4"):
        ds = open_dataset(tmp_path / "mixed", 8)
    assert len(ds) == 2 and ds.skipped == 2
    assert ds.uint8()[:, :, 0, 0].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_all_corrupt_is_an_error(tmp_path):
    write_corrupt(tmp_path / "bad")
    with pytest.raises(DatasetError, match=r"all 2 image files .* unreadable"):
        open_dataset(tmp_path / "bad", 8)


def test_missing_path_names_it_and_lists_builtins(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        open_dataset(missing, 32)
    msg = str(err.value)
    assert str(missing) in msg and "fluent-faces" in msg and "shapes" in msg
    with pytest.raises(DatasetError, match="Did you mean 'fluent-faces'"):
        open_dataset("fluent-face", 32)


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_no_images_is_an_error(tmp_path, kind):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("hello")
    target = tmp_path / "empty"
    if kind == "zip":
        target = tmp_path / "empty.zip"
        with zipfile.ZipFile(target, "w") as zf:
            zf.writestr("readme.txt", "hello")
    with pytest.raises(DatasetError) as err:
        open_dataset(target, 32)
    assert target.name in str(err.value) and ".png" in str(err.value)
    assert ".jpg" in str(err.value)


def test_plain_file_is_an_error(tmp_path):
    f = save(tmp_path / "one.png", solid(8, 8, (0, 0, 0)))
    with pytest.raises(DatasetError, match="not a .zip"):
        open_dataset(f, 8)


@pytest.mark.parametrize("resolution", [0, -8, 3.5, "32", True, None])
def test_bad_resolution(resolution):
    with pytest.raises(DatasetError, match="resolution"):
        open_dataset("shapes", resolution)


@pytest.mark.parametrize("channels", [0, 2, 4, "3"])
def test_bad_channels(channels):
    with pytest.raises(DatasetError, match="channels"):
        open_dataset("shapes", 32, channels)


def test_bad_max_images():
    with pytest.raises(DatasetError, match="max_images"):
        open_dataset("shapes", 32, max_images=0)


# --------------------------------------------------------------------------- cache and pool


def test_a_large_set_says_whether_it_decodes_or_reads_the_cache(tmp_path, monkeypatch, caplog):
    """Start-up lines (`train` prints them): the listing, the fingerprint and reserving the
    cache take seconds at CelebA scale before the decode bar moves."""
    from began_core.data import dataset

    monkeypatch.setattr(sources, "CACHE_MIN_FILES", 0)
    monkeypatch.setattr(dataset, "PROGRESS_MIN_FILES", 3)  # a large set, here
    folder = tmp_path / "faces"
    for i in range(4):
        save(folder / f"{i}.png", solid(12, 12, (i * 40, 0, 0)))
    with caplog.at_level(logging.INFO, logger="began_core"):
        open_dataset(folder, 8)
        assert f"{folder}: 4 images to decode at 8x8; kept for the next run" in caplog.text
        caplog.clear()
        open_dataset(folder, 8)
        assert f"{folder}: 4 images, decoded before (cache folder-" in caplog.text
        caplog.clear()
        monkeypatch.setattr(dataset, "PROGRESS_MIN_FILES", 5)  # a small one says nothing
        open_dataset(folder, 8)
        assert not caplog.text


def test_cache_is_reused_without_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CACHE_MIN_FILES", 0)
    folder = tmp_path / "many"
    for i in range(5):
        save(folder / f"{i}.png", solid(12, 12, (i * 40, 0, 0)))
    (folder / "broken.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="skipped 1"):
        first = open_dataset(folder, 8)
    assert first.cache_path and Path(first.cache_path).parent.parent == tmp_path / "cache"
    assert not list(Path(first.cache_path).parent.glob("*.tmp*"))  # written atomically

    def no_decoding(job):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decoding, "_decode_job", no_decoding)
    again = open_dataset(folder, 8)
    assert isinstance(again.uint8(), np.memmap) and again.cache_path == first.cache_path
    assert np.array_equal(again.uint8(), first.uint8()) and again.skipped == 1
    clone = pickle.loads(pickle.dumps(again))  # a DataLoader worker reopens the memmap
    assert len(pickle.dumps(again)) < 10_000 and np.array_equal(clone.uint8(), first.uint8())
    save(folder / "new.png", solid(12, 12, (0, 0, 0)))  # a changed folder is decoded anew
    with pytest.raises(AssertionError, match="decoded again"):
        open_dataset(folder, 8)


def test_process_pool_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "POOL_MIN_FILES", 0)
    for i in range(6):
        save(tmp_path / "p" / f"{i}.png", solid(10, 10, (0, i * 40, 0)))
    (tmp_path / "p" / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.warns(UserWarning, match="skipped 1 of 7"):
        ds = open_dataset(tmp_path / "p", 4)
    assert len(ds) == 6 and ds.uint8()[:, 1, 0, 0].tolist() == [0, 40, 80, 120, 160, 200]


def test_truncate_npy_keeps_a_valid_file(tmp_path):
    path = tmp_path / "x.npy"
    arr = np.lib.format.open_memmap(path, "w+", np.uint8, (1000, 3, 4, 4))
    arr[:] = np.arange(1000)[:, None, None, None] % 251
    arr.flush()
    del arr
    cache._truncate_npy(path, 7)
    back = np.load(path)
    assert back.shape == (7, 3, 4, 4) and back[:, 0, 0, 0].tolist() == list(range(7))


def test_upscale_repeats_every_pixel_for_each_layout():
    from began_core.data.images import upscale

    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert upscale(a, 2).tolist()[:2] == [[0, 0, 1, 1, 2, 2]] * 2
    rgb = np.stack([a, a + 10, a + 20], -1)
    assert upscale(rgb, 3).shape == (6, 9, 3) and upscale(rgb, 3)[5, 8].tolist() == [5, 15, 25]
    batch = np.stack([rgb, rgb + 100])
    assert upscale(batch, 2).shape == (2, 4, 6, 3) and upscale(batch, 2)[1, 3, 5, 0] == 105
    assert upscale(a, 1) is a

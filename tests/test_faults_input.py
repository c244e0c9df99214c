"""Hostile input at every entry point, as tables: the case and the clear error it must give.

Uploaded images (the explorer and the dashboard share images.prepare_image), CLI options,
data folders and zips (zip bombs, names that climb out of the archive, symbolic links out of
the folder) and checkpoint folders. Every one is refused with one message that says what is
wrong, and never with a traceback. The figures in docs/operations.md count these rows.
"""

import io
import json
import os
import shutil
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from began_core.checkpoints.hub import CheckpointError, load, save_pretrained
from began_core.cli.main import main
from began_core.config import ModelConfig
from began_core.data.images import prepare_image
from began_core.data.sources import DatasetError, open_dataset
from began_core.nn.model import BEGAN

pytestmark = pytest.mark.faults


def png(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with almost no data: a decompression bomb
    is refused from its header, before a pixel is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


NOT_AN_IMAGE = "not an image"
UPLOADS = [
    ("20000x20000 PNG bomb", lambda: png_bomb(20000, 20000), "could be decompression bomb"),
    ("12000x12000 image", lambda: png_bomb(12000, 12000), "the limit is 16,777,216 pixels"),
    ("truncated PNG", lambda: png()[:60], "corrupt or truncated"),
    (
        "SVG",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        NOT_AN_IMAGE,
    ),
    ("empty file", lambda: b"", NOT_AN_IMAGE),
    ("text file", lambda: b"#!/bin/sh\nrm -rf /\n", NOT_AN_IMAGE),
    ("GIF magic only", lambda: b"GIF89a", NOT_AN_IMAGE),
    ("21 MB file", lambda: b"\0" * (21 * 2**20), "the limit is 20 MB"),
    ("None", lambda: None, "not an image: got a NoneType"),
    ("a number", lambda: 5, "not an image: got a int"),
    ("a path that is not there", lambda: "/no/such/image.png", "no image file at"),
]


@pytest.mark.parametrize(("make", "said"), [u[1:] for u in UPLOADS], ids=[u[0] for u in UPLOADS])
def test_hostile_upload_is_refused_clearly(make, said):
    with pytest.raises(ValueError, match=None) as info:
        prepare_image(make(), 32, 3)
    assert said in str(info.value)


CLI = [
    (["--steps", "-1"], "steps must be a positive integer"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--gamma", "inf"], "gamma must be in (0, 1]"),
    (["--resolution", "100000"], "resolution 100000 is not supported"),
    (["--filters", "0"], "n must be a positive integer"),
    (["--filters", "100000"], "n=100000, above the limit of 512"),
    (["--batch-size", "100000"], "batch_size=100000, above the limit"),
    (["--max-images", "0"], "max_images must be a positive integer"),
    (["--z-dim", "0"], "Nz must be a positive integer"),
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive integer"),
    (["--keep-checkpoints", "0"], "keep_checkpoints must be a positive integer"),
    (["--heldout", "2"], "heldout must be a share in [0, 0.5)"),
    (["--augment", "evil;rm"], "unknown augmentation"),
    (["--data", "/etc/passwd"], "is a file but not a .zip"),
    (["--data", "../../../../no/such"], "not found"),
]


@pytest.mark.parametrize(("args", "said"), CLI, ids=[" ".join(c[0]) for c in CLI])
def test_hostile_cli_option_is_one_line_and_starts_nothing(tmp_path, capsys, args, said):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", "shapes", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "Traceback" not in err
    assert not out.exists()


OVERSIZED = [  # hand-edited into a run's config.json: refused before anything is allocated
    ("model", "n", 1_000_000, "n=1000000, above the limit of 512"),
    ("model", "Nz", 10**9, "Nz=1000000000, above the limit"),
    ("model", "Nh", 10**7, "Nh=10000000, above the limit"),
    ("train", "batch_size", 10**6, "batch_size=1000000, above the limit"),
]


@pytest.mark.parametrize(
    ("section", "key", "value", "said"), OVERSIZED, ids=[o[1] for o in OVERSIZED]
)
def test_resume_of_an_oversized_config_is_one_line(tmp_path, capsys, section, key, value, said):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", "shapes", "--filters", "8", "--steps", "2"]
    assert main([*args, "--checkpoint-every", "2", "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    config[section][key] = value
    (out / "config.json").write_text(json.dumps(config))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--steps", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "config.json" in err
    assert err.count("\n") == 1 and "not trained" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_cli_resume_of_what_is_not_a_run(tmp_path, capsys):
    for target in (tmp_path / "none", tmp_path):
        assert main(["train", "--resume", str(target), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err


# ------------------------------------------------------------------ data folders and zips


def make_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def overlapping_zip(path, copies: int, size: int, compression=zipfile.ZIP_STORED):
    """An overlapping zip bomb: one member of `size` zero bytes that `copies` entries of the
    zip's directory all point to. The file holds the member once; its directory declares
    `copies` x `size` bytes, and each entry alone is small enough to pass."""
    make_zip(path, {"0000.png": b"\0" * size}, compression)
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")  # end of central directory
    start = struct.unpack_from("<I", data, end + 16)[0]
    entry = data[start:end]
    entries = b"".join(entry.replace(b"0000.png", b"%04d.png" % i) for i in range(copies))
    tail = bytearray(data[end:])
    struct.pack_into("<HHI", tail, 8, copies, copies, len(entries))
    path.write_bytes(data[:start] + entries + bytes(tail))
    return path


def data_case(kind: str, root):
    root.mkdir(exist_ok=True)
    if kind == "zip bomb":  # 25 MB of zeros deflate to 25 KB
        return make_zip(root / "bomb.zip", {"a.png": png(), "b.png": b"\0" * (25 * 2**20)})
    if kind == "zip bomb of many members, each under the limit":  # 1,100 x 16 MiB, in 16 MiB
        return overlapping_zip(root / "many.zip", 1100, 16 * 2**20)
    if kind == "zip bomb inflating 1,000 times":  # 8 x 10 MB of zeros, in 80 KB
        zeros = {f"{i}.png": b"\0" * (10 * 2**20) for i in range(8)}
        return make_zip(root / "ratio.zip", {"a.png": png(), **zeros})
    if kind == "../ in a zip":
        return make_zip(root / "up.zip", {"ok.png": png(), "../../evil.png": png()})
    if kind == "absolute name in a zip":
        return make_zip(root / "abs.zip", {"ok.png": png(), "/etc/evil.png": png()})
    if kind == "symlink out of the folder":
        outside = root / "outside.png"
        outside.write_bytes(png())
        folder = root / "data"
        folder.mkdir()
        (folder / "ok.png").write_bytes(png())
        os.symlink(outside, folder / "link.png")
        return folder
    if kind == "empty folder":
        (root / "empty").mkdir()
        return root / "empty"
    if kind == "zip with no images":
        return make_zip(root / "docs.zip", {"readme.txt": b"hi", "x.exe": b"MZ"})
    if kind == "not a zip":
        (root / "fake.zip").write_bytes(b"PK\x03\x04 and then nothing")
        return root / "fake.zip"
    if kind == "every image corrupt":
        folder = root / "bad"
        folder.mkdir()
        (folder / "a.png").write_bytes(png()[:40])
        (folder / "b.png").write_bytes(b"not a png")
        return folder
    if kind == "PNG bombs only":
        folder = root / "bombs"
        folder.mkdir()
        (folder / "a.png").write_bytes(png_bomb(20000, 20000))
        return folder
    raise AssertionError(kind)


DATA = [
    ("zip bomb", "would inflate to 26,214,400 bytes"),
    (
        "zip bomb of many members, each under the limit",
        "would inflate to 18,454,937,600 bytes in all, from a file of 16,8",
    ),
    ("zip bomb inflating 1,000 times", "Image files compress far less than 100 times"),
    ("../ in a zip", "names a path outside the archive"),
    ("absolute name in a zip", "names a path outside the archive"),
    ("symlink out of the folder", "is a symbolic link to a file outside it"),
    ("empty folder", "no images found in the folder"),
    ("zip with no images", "no images found in the zip"),
    ("not a zip", "is a file but not a .zip"),
    ("every image corrupt", "were unreadable"),
    ("PNG bombs only", "were unreadable"),
]


@pytest.mark.parametrize(("kind", "said"), DATA, ids=[d[0] for d in DATA])
def test_hostile_data_is_refused_before_decoding(tmp_path, monkeypatch, kind, said):
    monkeypatch.setenv("BEGAN_CACHE", str(tmp_path / "cache"))
    source = data_case(kind, tmp_path / "in")
    with pytest.raises(DatasetError) as info:
        open_dataset(source, 32, 3)
    assert said in str(info.value)


# What can be told from the file names, before any decoding: the dashboard's check before a
# launch must refuse each of these as training does (it once accepted the hostile zips).
LISTED = [d for d in DATA if d[0] not in ("every image corrupt", "PNG bombs only")]


@pytest.mark.parametrize(("kind", "said"), LISTED, ids=[d[0] for d in LISTED])
def test_the_launch_check_refuses_what_training_refuses(tmp_path, kind, said):
    from began_core.runs.launch import LaunchError, check_data

    source = data_case(kind, tmp_path / "in")
    with pytest.raises(LaunchError) as info:
        check_data(str(source), 1)
    assert said in str(info.value)


def test_symlink_inside_the_folder_is_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("BEGAN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.png").write_bytes(png())
    os.symlink(folder / "a.png", folder / "b.png")
    assert len(open_dataset(folder, 32, 3)) == 2


def test_small_zip_of_images_that_deflate_well_is_fine(tmp_path, monkeypatch):
    """The ratio guard spares small zips: flat-colour BMPs deflate hundreds of times."""
    monkeypatch.setenv("BEGAN_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (250, 250, 250)).save(buf, "BMP")
    path = make_zip(tmp_path / "flat.zip", {f"{i}.bmp": buf.getvalue() for i in range(4)})
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
    assert sum(m.file_size for m in members) > 100 * sum(m.compress_size for m in members)
    assert len(open_dataset(path, 32, 3)) == 4


# ------------------------------------------------------------------ checkpoint folders


def checkpoint_case(kind: str, root):
    folder = save_pretrained(BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16)), root / "c")
    if kind == "no folder":
        shutil.rmtree(folder)
    elif kind == "pickle only":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif kind == "config not JSON":
        (folder / "config.json").write_text("{")
    elif kind == "config too large":
        (folder / "config.json").write_text(" " * (65 * 1024) + "{}")
    elif kind == "config unknown field":
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "evil": 1}))
    elif kind == "config absurd size":
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "n": 10**6, "Nh": 10**6}))
    elif kind == "weights truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif kind == "weights header huge":
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    return folder


CHECKPOINTS = [
    ("no folder", "no checkpoint folder at"),
    ("pickle only", "never loaded here"),
    ("config not JSON", "is not a valid BEGAN model config"),
    ("config too large", "too large to be a BEGAN model config"),
    ("config unknown field", "is not a valid BEGAN model config"),
    ("config absurd size", ""),
    ("weights truncated", ""),
    ("weights header huge", ""),
]


@pytest.mark.parametrize(("kind", "said"), CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_hostile_checkpoint_folder_is_refused(tmp_path, capsys, kind, said):
    folder = checkpoint_case(kind, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load(folder)
    assert said in str(info.value)
    assert main(["sample", str(folder), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err

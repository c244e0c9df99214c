"""scripts/mirror_picture.py, the README's mirror-interpolation picture: which faces it takes,
and a whole picture from a shipped generator."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts import mirror_picture

ROOT = Path(__file__).resolve().parents[1]

(SHIPPED,) = sorted((ROOT / "pretrained").glob("fluent-faces-*-gamma0.5"))
R = json.loads((SHIPPED / "config.json").read_text())["resolution"]


def without_heldout(tmp_path: Path) -> Path:
    """A copy of the shipped generator whose record says it trained on every image."""
    folder = shutil.copytree(SHIPPED, tmp_path / "no-heldout")
    record = json.loads((folder / "training.json").read_text())
    record["run"]["data"]["heldout"] = 0.0
    (folder / "training.json").write_text(json.dumps(record))
    return folder


def test_it_takes_distinct_asymmetric_faces_and_refuses_a_missing_heldout_split(tmp_path):
    source, x, picked = mirror_picture.faces(SHIPPED, 3, from_heldout=False)
    assert source == "fluent-faces" and x.shape == (3, 3, R, R) and len(set(picked)) == 3
    asymmetry = (x - x.flip(-1)).abs().mean().item()
    _, everything, _ = mirror_picture.faces(SHIPPED, 1124, from_heldout=False)
    assert asymmetry > (everything - everything.flip(-1)).abs().mean().item()
    with pytest.raises(SystemExit, match="without a held-out split"):
        mirror_picture.faces(without_heldout(tmp_path), 2, from_heldout=True)


def test_a_picture_holds_a_row_per_face(tmp_path, monkeypatch):
    out = tmp_path / "mirror.png"
    argv = [str(SHIPPED), "--faces", "1", "--frames", "3", "--size", str(R), "--out", str(out)]
    argv += ["--iterations", "5", "--starts", "1"]  # a short inversion: the picture's shape
    monkeypatch.setattr(sys, "argv", ["mirror_picture.py", *argv])
    assert mirror_picture.main() == 0
    picture = np.asarray(Image.open(out))
    # the face, three frames of G, the mirror image, and two gaps
    assert picture.shape == (R, 5 * R + 2 * mirror_picture.GAP, 3)
    face, mirrored = picture[:, :R], picture[:, -R:]
    assert np.array_equal(face[:, ::-1], mirrored)  # the ends are the face and its flip
    path = picture[:, R + mirror_picture.GAP : -R - mirror_picture.GAP]
    assert path.std() > 10  # G drew something, not a blank

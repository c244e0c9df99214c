"""The explorer's pictures go to Gradio as files written whole, each under its own name."""

import numpy as np
from PIL import Image

from app.served_images import ServedImages


def test_a_picture_becomes_a_png_file_of_its_own():
    served = ServedImages()
    a = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    first, second = served.file(a), served.file(a)
    assert first != second  # the same picture twice: two files, neither rewritten
    assert np.array_equal(np.asarray(Image.open(first)), a)
    assert not list(served.folder.glob("*.part"))  # no staging file left behind


def test_pictures_inside_returned_values_are_replaced_and_the_rest_kept():
    served = ServedImages()
    gray = np.zeros((8, 8), dtype=np.uint8)
    value = ["text", 0.5, gray, [(gray, "caption")], {"visible": True}]
    out = served.files(value)
    assert out[:2] == ["text", 0.5] and out[4] == {"visible": True}
    assert isinstance(out[2], str) and out[3][0][1] == "caption"
    assert np.array_equal(np.asarray(Image.open(out[3][0][0])), gray)
    assert served.files(np.zeros(3, dtype=np.float32)).dtype == np.float32  # not a picture


def test_only_the_newest_files_are_kept():
    served = ServedImages(keep=3)
    paths = [served.file(np.full((2, 2), i, dtype=np.uint8)) for i in range(5)]
    assert sorted(p.name for p in served.folder.iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in paths[-3:]
    )

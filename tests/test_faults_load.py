"""The explorer under load, on 127.0.0.1: several clients at once send slider renders, sample
grids, mirror inversions and gamma comparisons for a fixed time (bench/explorer_load.py).
Every request is answered or refused as busy, none is lost, and memory stays bounded. A queue
of 2 shows the refusal: a clear "queue is full", and the server goes on serving."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[1] / "bench" / "explorer_load.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("explorer_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(bench, tmp_path_factory):
    return bench.make_checkpoints(tmp_path_factory.mktemp("load"))


@pytest.mark.parametrize(
    ("queue", "clients", "seconds"),
    [
        pytest.param(64, 6, 12, id="queue64"),
        pytest.param(2, 8, 8, id="queue2"),
    ],
)
def test_no_request_is_lost_under_load(bench, folders, queue, clients, seconds):
    pretrained, runs, image = folders
    demo, url = bench.serve(pretrained, runs, queue)
    try:
        figures = bench.load(url, image, clients=clients, seconds=seconds)
        from gradio_client import Client

        after = Client(url, verbose=False).predict(
            "pretrained/a-gamma0.3", 0, 4, api_name="/sample_grid"
        )
    finally:
        demo.close()
    print(figures)
    assert figures["lost"] == 0, figures["lost_errors"]
    assert figures["answered"] + figures["refused_busy"] == figures["requests"] > clients
    assert figures["answered"] >= clients
    assert all(n > 0 for n in figures["by_kind"].values())
    assert figures["rss_end_mb"] - figures["rss_start_mb"] < 1024  # bounded
    assert Path(after).is_file()  # still serving afterwards


def test_the_same_picture_for_many_at_once_arrives_whole(bench, folders):
    """Eight clients ask for one and the same grid again and again. Gradio writes a returned
    array in place to a path named by its hash, so a second request rewrote the file a first
    one was streaming, and lost it (an answer shorter than its Content-Length: 7 of 173 in
    20 s before app/served_images.py). Every one must arrive, whole."""
    pretrained, runs, image = folders
    demo, url = bench.serve(pretrained, runs)
    try:
        figures = bench.load(url, image, clients=8, seconds=10, same=True)
    finally:
        demo.close()
    print(figures)
    assert figures["lost"] == 0, figures["lost_errors"]
    assert figures["answered"] == figures["requests"] > 16

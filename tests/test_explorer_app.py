"""The Gradio explorer, launched here and driven through gradio_client as a user's browser
would: every endpoint returns images of the right size, inverting an image G made finds it
again, and bad inputs get a clear message while the server goes on serving."""

import importlib.util
import json
import os
import re
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from huggingface_hub import constants as hf_constants  # noqa: E402

from app import explorer, explorer_model, explorer_server  # noqa: E402
from began_core.checkpoints.hub import CheckpointError, save_pretrained  # noqa: E402
from began_core.checkpoints.model_card import model_card, training_record  # noqa: E402
from began_core.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402
from began_core.data.images import to_pil  # noqa: E402
from began_core.explore import latent  # noqa: E402
from began_core.nn.model import BEGAN  # noqa: E402
from began_core.runs.run_dir import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CFG = ModelConfig(resolution=32, n=8, Nh=16, Nz=16)
FIRST = "pretrained/a-gamma0.3"
# Mean |x - G(z)| after inverting a PNG of G's own image: the inversion itself ends near 2e-4
# on this model, the PNG's rounding to 8 bits adds about 1e-3.
APP_THRESHOLD = 0.02


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread here (after conftest's two): G is small, and on a shared 2-core
    machine two threads made these tiny models 20 to 50 times slower than one."""
    torch.set_num_threads(1)


def tiny(seed: int) -> BEGAN:
    """A random G scaled to be clearly non-linear in z (see tests/test_explore.py)."""
    torch.manual_seed(seed)
    model = BEGAN(CFG).eval()
    with torch.no_grad():
        for p in model.G.parameters():
            if p.dim() > 1:
                p.mul_(1.2)
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoints(root: Path) -> tuple[Path, Path]:
    """pretrained/ with three gammas, a corrupt and a mismatched checkpoint and a classifier
    (to be skipped); runs/ with one run."""
    pretrained, runs = root / "pretrained", root / "runs"
    for i, (name, gamma) in enumerate([("a", 0.3), ("b", 0.5), ("c", 0.7)]):
        config = RunConfig(model=CFG, train=TrainConfig(gamma=gamma))
        facts = dict(step=10, wall_time=1.0, hardware="cpu")
        card, record = model_card(config, **facts), training_record(config, **facts)
        save_pretrained(tiny(i), pretrained / f"{name}-gamma{gamma}", card=card, training=record)
    corrupt = save_pretrained(tiny(0), pretrained / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"these bytes are not safetensors")
    mismatched = save_pretrained(tiny(0), pretrained / "mismatched")
    (mismatched / "config.json").write_text(
        (mismatched / "config.json").read_text().replace('"n": 8', '"n": 16')
    )
    other = pretrained / "classifiers" / "faces"  # another model's folder: not a generator
    save_pretrained(tiny(0), other)
    (other / "config.json").write_text(json.dumps({"classes": 10, "width": 32}))
    run = RunDir(runs / "demo")
    run.create()
    run.write_config(RunConfig(model=CFG, train=TrainConfig(gamma=0.5)))
    run.write_checkpoint(5, lambda d: save_pretrained(tiny(3), d))
    return pretrained, runs


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return checkpoints(tmp_path_factory.mktemp("explorer"))


@pytest.fixture(scope="module")
def url(folders):
    demo = explorer.build_explorer(*folders)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def size(path: str) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def still_serving(client: Client) -> None:
    assert size(client.predict(FIRST, 0, 4, api_name="/sample_grid")) == (210, 210)


def test_checkpoints_are_found_in_pretrained_and_runs(folders):
    found = {c.key: c for c in explorer_model.discover(*folders)}
    assert set(found) == {
        "pretrained/a-gamma0.3",
        "pretrained/b-gamma0.5",
        "pretrained/c-gamma0.7",
        "pretrained/corrupt",
        "pretrained/mismatched",
        "runs/demo @ step 5",
    }
    assert found["runs/demo @ step 5"].gamma == 0.5 and found[FIRST].gamma == 0.3
    assert explorer_model.Explorer(*folders).gamma_defaults() == [
        "pretrained/a-gamma0.3",
        "pretrained/b-gamma0.5",
        "pretrained/c-gamma0.7",
    ]


def test_every_endpoint_returns_images_of_the_right_size(client, folders):
    # Choosing a checkpoint: description, 8 z sliders, 8 PCA sliders, the image, the dataset.
    out = client.predict(FIRST, 3, api_name="/select_checkpoint")
    info, image, gallery = out[0], out[-2], out[-1]
    assert "32x32 RGB" in info and "gamma 0.3" in info
    z_head = [update["value"] for update in out[1:9]]  # slider updates
    assert z_head == explorer_model.Explorer(*folders).slider_z(FIRST, 3)
    assert [update["label"][:4] for update in out[9:17]] == [f"PC{i}:" for i in range(1, 9)]
    assert size(image) == (256, 256)  # 32 px, nearest-neighbour x8
    assert len(gallery) == explorer_model.GALLERY_IMAGES and size(gallery[0]["image"]) == (96, 96)
    # A slider moved.
    sliders = [0.5] * 8 + [1.0] + [0.0] * 7
    assert size(client.predict(FIRST, 3, *sliders, api_name="/render")) == (256, 256)
    # A new seed sets the z sliders to its z.
    out = client.predict(FIRST, 4, *[0.0] * 8, api_name="/seed")
    assert list(out[:8]) == explorer_model.Explorer(*folders).slider_z(FIRST, 4)
    assert size(out[8]) == (256, 256)
    # A grid of 16: 4 x 4 frames of 32 + 2 px padding, then x3.
    assert size(client.predict(FIRST, 0, 16, api_name="/sample_grid")) == (414, 414)
    for mode in ("linear", "spherical"):
        strip = client.predict(FIRST, 0, 1, 8, mode, api_name="/interpolate")
        assert size(strip) == (3 * (8 * 34 + 2), 3 * 36)
    picked = client.predict(FIRST, 5, api_name="/dataset_image")
    assert size(picked) == (32, 32)
    pair, strip, summary = client.predict(FIRST, handle_file(picked), 6, 20, 2, api_name="/mirror")
    assert size(pair) == (280, 280) and size(strip) == (3 * (6 * 34 + 2), 3 * 36)
    assert "Reconstruction error" in summary
    grids = client.predict(
        ["pretrained/a-gamma0.3", "pretrained/b-gamma0.5", "runs/demo @ step 5"],
        0,
        16,
        api_name="/gamma",
    )
    assert [size(g["image"]) for g in grids] == [(276, 276)] * 3
    assert re.match(r"gamma 0\.3: diversity \d+\.\d\d \(", grids[0]["caption"])


def test_inverting_an_image_G_made_finds_it_again(client, folders, tmp_path):
    model = tiny(0)  # the weights of pretrained/a-gamma0.3
    x = model.generate(latent.z_from_seeds(model, 21))[0]
    to_pil(x).save(tmp_path / "made_by_G.png")
    _, _, summary = client.predict(
        FIRST, handle_file(tmp_path / "made_by_G.png"), 4, 150, 4, api_name="/mirror"
    )
    errors = [float(e) for e in re.findall(r"\*\*([0-9.]+)\*\*", summary)]
    assert len(errors) == 2 and errors[0] < APP_THRESHOLD, summary


def test_bad_images_get_a_clear_message_and_the_server_goes_on(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(AppError, match="not an image"):
        client.predict(FIRST, handle_file(text), 4, 5, 1, api_name="/mirror")
    still_serving(client)
    Image.new("L", (5000, 5000)).save(tmp_path / "huge.png")  # a few kB on disk, 25 Mpx
    with pytest.raises(AppError, match="4096 x 4096"):
        client.predict(FIRST, handle_file(tmp_path / "huge.png"), 4, 5, 1, api_name="/mirror")
    still_serving(client)
    grey = np.linspace(0, 255, 40 * 50).reshape(40, 50).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    pair, _, summary = client.predict(
        FIRST, handle_file(tmp_path / "grey.png"), 4, 5, 1, api_name="/mirror"
    )
    assert "greyscale image converted to RGB" in summary and size(pair) == (280, 280)
    with pytest.raises(AppError, match="greater than maximum value 64"):  # the slider says so
        client.predict(FIRST, 0, 10**6, api_name="/sample_grid")
    still_serving(client)


def test_bad_checkpoints_get_a_clear_message_and_the_server_goes_on(client, folders):
    info = client.predict("pretrained/corrupt", 0, api_name="/select_checkpoint")[0]
    assert "Cannot use pretrained/corrupt" in info and "not a safetensors file" in info
    assert str(folders[0]) not in info  # named as the list names it, not by its path
    with pytest.raises(AppError, match="corrupt or not a safetensors file"):
        client.predict("pretrained/corrupt", 0, 4, api_name="/sample_grid")
    still_serving(client)
    with pytest.raises(AppError, match="do not match"):
        client.predict("pretrained/mismatched", 0, 4, api_name="/sample_grid")
    still_serving(client)


def test_an_unknown_hub_repo_gets_a_clear_message(client, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # as on a machine offline
    with pytest.raises(AppError, match="Hub is not reachable"):
        client.predict("nobody/no-such-began", [], api_name="/load_hub")
    with pytest.raises(AppError, match="type a Hub repo id"):
        client.predict("  ", [], api_name="/load_hub")
    still_serving(client)


def test_launch_options_come_from_gradio_variables(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    options = explorer_server.launch_options()
    assert options["server_name"] == "127.0.0.1" and options["server_port"] is None
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    options = explorer_server.launch_options()
    assert options["server_name"] == "0.0.0.0" and options["server_port"] == 7861


def test_spaces_entry_point_launches_the_explorer():
    spec = importlib.util.spec_from_file_location("spaces_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing does not launch anything
    assert module.main is explorer_server.main
    front = (ROOT / "README.md").read_text(encoding="utf-8")
    if front.startswith("---"):  # the Space's front matter names this file
        assert re.search(r"^app_file: app\.py$", front.split("---")[1], flags=re.MULTILINE)


def test_serve_in_background_starts_one_server_per_process(folders, monkeypatch):
    monkeypatch.setenv("BEGAN_PRETRAINED_DIR", str(folders[0]))
    monkeypatch.setenv("BEGAN_RUNS_DIR", str(folders[1]))
    url = explorer_server.serve_in_background(port=free_port())
    assert explorer_server.serve_in_background() == url
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200


def test_mountable_serves_the_explorer_under_a_path_of_another_server(folders, monkeypatch):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    monkeypatch.setenv("BEGAN_PRETRAINED_DIR", str(folders[0]))
    monkeypatch.setenv("BEGAN_RUNS_DIR", str(folders[1]))
    mounted = explorer_server.mountable("/explore")
    parent = Starlette(routes=[mounted.route], lifespan=mounted.lifespan)
    with TestClient(parent) as http:  # runs the lifespan, as the dashboard's server would
        config = http.get("/explore/config")
        assert config.status_code == 200 and "BEGAN explorer" in config.text


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_in_a_browser_the_image_follows_a_slider(url, tmp_path):
    """Moving a slider (its input event, no release) changes the image in the page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    folder = Path(os.environ.get("BEGAN_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=60_000)
            image = page.locator("#sample-image img")
            image.wait_for(timeout=60_000)
            before = image.get_attribute("src")
            page.locator("#pc-0 input[type=range]").fill("2")
            page.wait_for_function(
                "src => document.querySelector('#sample-image img').src !== src",
                arg=before,
                timeout=30_000,
            )
            page.screenshot(path=folder / "explorer.png", full_page=True)
        finally:
            browser.close()
    assert (folder / "explorer.png").stat().st_size > 10_000


def test_requests_outside_the_limits_are_refused_before_any_work(folders):
    ex = explorer_model.Explorer(*folders)
    with pytest.raises(ValueError, match="samples must be between 1 and 64"):
        ex.grid(FIRST, 0, 10**6)
    with pytest.raises(ValueError, match="frames must be between 2 and 16"):
        ex.interpolation(FIRST, 0, 1, 500, "linear")
    with pytest.raises(ValueError, match="Adam steps must be between 0 and 1000"):
        ex.mirror(FIRST, np.zeros((32, 32, 3), np.uint8), 4, 10**7, 1)
    with pytest.raises(CheckpointError, match="unknown checkpoint '/etc'"):
        ex.model("/etc")  # no local path outside the lists, from the page or the API


def test_models_are_loaded_as_normal_tensors_even_under_inference_mode(folders):
    """The gamma handler runs under inference_mode; a model it loads first must still serve
    PCA directions and inversion, which differentiate through G."""
    ex = explorer_model.Explorer(*folders)
    with torch.inference_mode():
        model = ex.model(FIRST)
    assert not any(p.is_inference() for p in model.parameters())
    assert len(ex.directions(FIRST)) > 0

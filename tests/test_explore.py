"""began_core.explore.latent, .inversion and .images: sampling, interpolation, PCA directions, inversion, the paper's mirror
interpolation and gamma grid, and input images. Tiny seeded models; the inversion threshold is
also checked on a trained checkpoint when one is at hand (pretrained/, or the folder in
$BEGAN_TEST_CHECKPOINT: a checkpoint, or a run directory whose latest checkpoint is used)."""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from began_core.checkpoints import hub
from began_core.checkpoints.hub import CONFIG, WEIGHTS, load, save_pretrained
from began_core.checkpoints.model_card import training_record
from began_core.config import ModelConfig, RunConfig, TrainConfig
from began_core.data import images
from began_core.explore import inversion, latent
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import RunDir

CFG = ModelConfig(resolution=32, n=8, Nh=16, Nz=16)
ROOT = Path(__file__).resolve().parent.parent

# Inverting an image that G itself made: mean |x - G(z)| on the [-1, 1] scale must end below
# these. Measured on the tiny model below: about 2e-4 after 100 steps, from about 0.29 at the
# best random start. On the shipped 64x64 gamma 0.7 generator (2026-12-03), after 300 steps
# from 4 starts: 1.0e-3 to 1.4e-3, and the latent found within 0.023 to 0.025 of z* (mean
# |z - z*|). z is found again only where G is close to one-to-one: at gamma 0.5 and 0.3 G maps
# many z to nearly one image (the lower gamma, the less diverse), so after 300 steps the image
# is matched to 4e-3 to 6e-3 while z lies 0.17 to 0.46 away. The test takes the highest gamma.
TINY_THRESHOLD = 0.01
REAL_THRESHOLD = 0.005
REAL_Z_THRESHOLD = 0.05


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread here (after conftest's two): G is small, and on a shared 2-core
    machine two threads made these tiny models 20 to 50 times slower than one."""
    torch.set_num_threads(1)


def tiny_model(seed: int = 0, gain: float = 1.2) -> BEGAN:
    """A random G with its weights scaled up, so that it is visibly non-linear in z and its
    images span most of [-1, 1] (a freshly initialised G gives faint images from which any
    start is within 0.05, and any inversion would pass)."""
    torch.manual_seed(seed)
    model = BEGAN(CFG).eval()
    with torch.no_grad():
        for p in model.G.parameters():
            if p.dim() > 1:
                p.mul_(gain)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_seeds_give_the_same_z_alone_or_in_a_batch(model):
    z = latent.z_from_seeds(model, [3, 4, 5])
    assert z.shape == (3, CFG.Nz) and z.abs().max() <= 1
    assert torch.equal(latent.z_from_seeds(model, 4)[0], z[1])
    x = latent.sample(model, [3, 4, 5])
    assert x.shape == (3, 3, 32, 32) and x.abs().max() <= 1
    assert torch.equal(latent.sample(model, z), x)
    with pytest.raises(ValueError, match="z must be"):
        latent.sample(model, torch.zeros(2, CFG.Nz + 1))


def test_lerp_and_slerp_end_at_both_latents():
    z0, z1 = torch.rand(2, 16) * 2 - 1
    for f in (latent.lerp, latent.slerp):
        path = f(z0, z1, torch.linspace(0, 1, 5))
        assert path.shape == (5, 16)
        assert torch.allclose(path[0], z0, atol=1e-6) and torch.allclose(path[-1], z1, atol=1e-6)
    # The arc keeps the norm between the ends' norms (a line dips towards the origin).
    arc, line = latent.slerp(z0, z1, 0.5)[0], latent.lerp(z0, z1, 0.5)[0]
    assert arc.norm() >= min(z0.norm(), z1.norm()) - 1e-5
    assert line.norm() < arc.norm()
    # Parallel ends fall back to the line.
    assert torch.allclose(latent.slerp(z0, 2 * z0, 0.5)[0], 1.5 * z0)


def test_interpolate_shows_both_ends(model):
    z = latent.z_from_seeds(model, [0, 1])
    for mode in ("linear", "spherical"):
        frames = latent.interpolate(model, z[0], z[1], steps=6, mode=mode)
        assert frames.shape == (6, 3, 32, 32)
        assert torch.allclose(frames[0], model.generate(z[:1])[0], atol=1e-4)
        assert torch.allclose(frames[-1], model.generate(z[1:])[0], atol=1e-4)
    with pytest.raises(ValueError, match="steps"):
        latent.interpolate(model, z[0], z[1], steps=1)
    with pytest.raises(ValueError, match="mode"):
        latent.interpolate(model, z[0], z[1], mode="cubic")


def test_pca_directions_are_ranked_unit_vectors_and_cached():
    model = tiny_model(seed=1)
    d = latent.pca_directions(model, n_samples=256, k=4)
    assert d.vectors.shape == (4, CFG.Nz) and len(d) == 4
    assert torch.allclose(d.vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    ev = d.explained_variance
    assert (ev[:-1] >= ev[1:]).all() and 0 < ev.sum() <= 1
    assert not d.vectors.requires_grad  # no autograd graph through G is built or kept
    assert latent.pca_directions(model, n_samples=256, k=4) is d  # cached
    with torch.no_grad():
        model.G.decoder.fc.weight.mul_(0.5)  # new weights: computed again
    assert latent.pca_directions(model, n_samples=256, k=4) is not d
    # The first direction changes the image more than a random direction does.
    z = latent.z_from_seeds(model, list(range(8))) * 0.5
    base = model.generate(z)
    along = model.generate(latent.move(z, d, [0.5]))
    rand = torch.nn.functional.normalize(torch.randn(1, CFG.Nz), dim=1)
    across = model.generate(latent.move(z, rand, [0.5]))
    assert (along - base).abs().mean() > (across - base).abs().mean()


def test_move_adds_amounts_and_clips_to_the_cube():
    dirs = torch.eye(4)
    z = torch.tensor([0.5, -0.5, 0.0, 0.9])
    assert torch.equal(latent.move(z, dirs, [0.0, 0.0]), z)
    moved = latent.move(z, dirs, [0.25, -2.0, 0.0, 0.5])
    assert torch.allclose(moved, torch.tensor([0.75, -1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="amounts"):
        latent.move(z, dirs, [0.0] * 5)


def test_inversion_of_an_image_G_made_finds_it_again(model):
    z_star = latent.z_from_seeds(model, [11, 12])
    x = model.generate(z_star)
    start = inversion.invert(model, x, steps=0, restarts=4)  # the best random starts only
    z, x_hat, error = inversion.invert(model, x, steps=100, restarts=4)
    assert z.shape == (2, CFG.Nz) and x_hat.shape == x.shape and error.shape == (2,)
    assert z.abs().max() <= 1
    assert (start.error > 0.1).all(), "the test must not pass at the start"
    assert (error < TINY_THRESHOLD).all(), error
    assert torch.allclose(error, (x_hat - x).abs().flatten(1).mean(1), atol=1e-6)
    # One image in, one out.
    single = inversion.invert(model, x[0], steps=5, restarts=2)
    assert single.z.shape == (CFG.Nz,) and single.reconstruction.shape == x[0].shape
    assert single.error.dim() == 0
    with pytest.raises(ValueError, match="C=3, R=32"):
        inversion.invert(model, torch.zeros(1, 64, 64))


def test_inversion_runs_inside_inference_mode_and_reports_progress(model):
    x = model.generate(latent.z_from_seeds(model, 1))
    calls = []
    with torch.inference_mode():
        inverted = inversion.invert(
            model, x, steps=3, restarts=2, progress=lambda *a: calls.append(a)
        )
    assert inverted.error.shape == (1,) and calls == [(1, 3), (2, 3), (3, 3)]
    assert all(p.requires_grad for p in model.G.parameters())  # left as it was


def _real_checkpoint(tmp_path: Path) -> Path | None:
    """A trained checkpoint, copied first: a training run may be writing the original."""
    given = os.environ.get("BEGAN_TEST_CHECKPOINT")
    found = None
    if given:
        path = Path(given)
        if (path / "checkpoints").is_dir():  # a run directory: its newest checkpoint
            steps = RunDir(path).checkpoints()
            found = steps[-1][1] if steps else None
        else:
            found = path
    else:
        pretrained = ROOT / "pretrained"
        # The highest gamma first (its name sorts last): see REAL_Z_THRESHOLD above.
        configs = sorted(pretrained.rglob(CONFIG), reverse=True) if pretrained.is_dir() else []
        found = next(
            (
                c.parent
                for c in configs
                if "classifiers" not in c.parts and (c.parent / WEIGHTS).is_file()
            ),
            None,
        )
    if found is None:
        return None
    copy = tmp_path / "checkpoint"
    shutil.copytree(found, copy, ignore=shutil.ignore_patterns("training_state.pt"))
    return copy


def test_inversion_on_a_trained_checkpoint(tmp_path):
    path = _real_checkpoint(tmp_path)
    if path is None:
        pytest.skip("no trained checkpoint: none in pretrained/ and no $BEGAN_TEST_CHECKPOINT")
    model = load(path)
    z_star = latent.z_from_seeds(model, [101, 102])
    x = model.generate(z_star)
    z, _, error = inversion.invert(model, x, steps=300, restarts=4)
    assert z.abs().max() <= 1
    assert (error < REAL_THRESHOLD).all(), error
    assert ((z - z_star).abs().mean(1) < REAL_Z_THRESHOLD).all(), (z - z_star).abs().mean(1)


def test_mirror_interpolation_inverts_the_image_and_its_flip(model):
    x = model.generate(latent.z_from_seeds(model, 7))[0]
    m = inversion.mirror_interpolation(model, x, steps=5, invert_steps=20, restarts=2)
    assert torch.equal(m.flipped, x.flip(-1))
    assert m.frames.shape == (5, 3, 32, 32)
    assert torch.allclose(m.frames[0], m.reconstruction, atol=1e-5)
    assert torch.allclose(m.frames[-1], m.reconstruction_flipped, atol=1e-5)
    assert m.error == pytest.approx(float((m.reconstruction - x).abs().mean()), abs=1e-5)
    assert m.z.shape == m.z_flipped.shape == (CFG.Nz,)


def test_gamma_grid_feeds_one_z_to_every_model(model):
    other = tiny_model(seed=2)
    z = latent.z_from_seeds(model, list(range(6)))
    grids = latent.gamma_grid([model, other], z)
    assert [g.shape for g in grids] == [(6, 3, 32, 32)] * 2
    assert torch.equal(grids[0], model.generate(z))
    wide = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=32))
    with pytest.raises(ValueError, match="latent sizes"):
        latent.gamma_grid([model, wide], z)


def test_read_origin_from_training_json_or_the_run(tmp_path):
    config = RunConfig(model=CFG, train=TrainConfig(gamma=0.3))
    record = training_record(config, step=1, wall_time=1, hardware="x")
    folder = save_pretrained(BEGAN(CFG), tmp_path / "exported", training=record)
    assert latent.read_origin(folder) == (0.3, "fluent-faces")
    assert hub.read_training(folder)["step"] == 1
    run = RunDir(tmp_path / "run")
    run.create()
    run.write_config(RunConfig(model=CFG, train=TrainConfig(gamma=0.7)))
    ckpt = run.write_checkpoint(5, lambda d: save_pretrained(BEGAN(CFG), d))
    assert latent.read_origin(ckpt).gamma == 0.7
    assert latent.read_origin(save_pretrained(BEGAN(CFG), tmp_path / "bare")) == (None, None)


# --------------------------------------------------------------------------- input images


def _png_bytes(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def test_prepare_image_accepts_every_kind_of_picture(tmp_path):
    rgb = Image.new("RGB", (64, 48), (255, 0, 0))
    x, notes = images.prepare_image(rgb, 32, 3)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert any("centre-cropped" in n for n in notes) and any("resized" in n for n in notes)
    path = tmp_path / "red.png"
    rgb.save(path)
    for source in (path, str(path), path.read_bytes(), np.asarray(rgb)):
        assert torch.equal(images.prepare_image(source, 32, 3)[0], x)
    floats = np.full((32, 32, 3), 0.5, dtype=np.float32)  # floats in [0, 1]
    assert images.prepare_image(floats, 32, 3)[0].abs().max() < 0.01
    x, notes = images.prepare_image(np.zeros((32, 32), np.uint8), 32, 3)
    assert x.shape == (3, 32, 32) and any("greyscale image converted to RGB" in n for n in notes)
    x, notes = images.prepare_image(rgb, 32, 1)
    assert x.shape == (1, 32, 32) and any("converted to greyscale" in n for n in notes)
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # transparent: white, as in training
    x, notes = images.prepare_image(clear, 32, 3)
    assert torch.allclose(x, torch.ones_like(x)) and any("white" in n for n in notes)
    assert images.prepare_image(Image.new("RGB", (32, 32)), 32, 3)[1] == []


def test_prepare_image_refuses_what_is_not_a_usable_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(ValueError, match="not an image"):
        images.prepare_image(text, 32, 3)
    with pytest.raises(ValueError, match="not an image"):
        images.prepare_image(b"\x00\x01garbage", 32, 3)
    with pytest.raises(ValueError, match="not an image"):
        images.prepare_image(np.zeros((4, 4, 2)), 32, 3)
    with pytest.raises(ValueError, match="not an image"):
        images.prepare_image({"a": 1}, 32, 3)  # type: ignore[arg-type]
    # Pixels are counted before decoding: a decompression bomb never reaches memory.
    huge = _png_bytes(Image.new("L", (5000, 4000)))
    with pytest.raises(ValueError, match="4096 x 4096"):
        images.prepare_image(huge, 32, 3)
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(images.MAX_BYTES + 1)
    with pytest.raises(ValueError, match="20 MB"):
        images.prepare_image(big, 32, 3)
    truncated = _png_bytes(Image.effect_noise((64, 64), 50))[:200]
    with pytest.raises(ValueError, match="corrupt|truncated|not an image"):
        images.prepare_image(truncated, 32, 3)
    with pytest.raises(ValueError, match="no image file"):
        images.prepare_image(tmp_path / "missing.png", 32, 3)

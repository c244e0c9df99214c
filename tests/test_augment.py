"""Training on small data: the augmentation T of what D sees, the held-out split that shows D
memorising, the adaptive strength, and keeping the best-scoring checkpoint."""

import json

import numpy as np
import pytest
import torch

from began_core.checkpoints.hub import load
from began_core.cli.main import build_parser, resolve_config
from began_core.config import ConfigError, ModelConfig, RunConfig, parse_policy
from began_core.flags import train_flags
from began_core.nn.model import BEGAN
from began_core.publish.export import export, locate
from began_core.runs.run_dir import RunDir
from began_core.training import augment, heldout
from began_core.training.augment import Augment
from began_core.training.batches import Batches
from began_core.training.step import update_G
from began_core.training.train import train

from conftest import TensorDataset, tiny_config, with_train

ALL = ("translation", "cutout", "color")


def images(n=8, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def with_data(config, **changes):
    import dataclasses

    return dataclasses.replace(config, data=dataclasses.replace(config.data, **changes))


# --------------------------------------------------------------------------- T itself


@pytest.mark.parametrize("policy", [("translation",), ("cutout",), ("color",), ALL])
def test_T_keeps_shape_and_range_and_changes_images(policy):
    v = images()
    out = Augment(policy, 1.0, seed=0)(v, step=3, use="real")
    assert out.shape == v.shape and out.dtype == v.dtype
    assert out.min() >= -1 and out.max() <= 1
    changed = (out != v).flatten(1).any(1)
    assert changed.float().mean() >= 0.5  # most images moved (a zero shift is possible)


def test_translation_shifts_by_at_most_an_eighth_and_fills_zeros():
    v = images(64)
    d = augment.draw(("translation",), 1.0, 32, 64, (0, 0, 1))
    assert d.shift.abs().max() <= 4 and d.shift.abs().max() > 0
    out = augment.apply(v, d)
    dy, dx = d.shift[0].tolist()
    expect = torch.roll(v[0], (dy, dx), (1, 2))
    rows = slice(max(dy, 0), 32 + min(dy, 0))
    cols = slice(max(dx, 0), 32 + min(dx, 0))
    assert torch.equal(out[0][:, rows, cols], expect[:, rows, cols])
    filled = torch.ones(32, 32, dtype=torch.bool)
    filled[rows, cols] = False
    assert (out[0][:, filled] == 0).all()


def test_cutout_zeroes_one_square_of_half_the_side():
    v = torch.ones(16, 3, 32, 32)
    out = Augment(("cutout",), 1.0, seed=0)(v, step=0, use="real")
    holes = (out[:, 0] == 0).sum((1, 2))
    assert holes.max() == 16 * 16  # a whole square where it fits
    assert (holes > 0).all() and (holes <= 256).all()


def test_p_is_the_share_of_images_transformed():
    v = images(2000, size=8)
    for p in (0.0, 0.3, 1.0):
        out = Augment(("cutout",), p, seed=1)(v, step=0, use="real")
        share = (out != v).flatten(1).any(1).float().mean().item()
        assert abs(share - p) < 0.05
    assert not Augment(("cutout",), 0.0, seed=0)
    assert not Augment((), 1.0, seed=0)


def test_draws_are_a_function_of_seed_step_and_use():
    v = images()
    T = Augment(ALL, 1.0, seed=5)
    assert torch.equal(T(v, 7, "real"), T(v, 7, "real"))
    assert not torch.equal(T(v, 7, "real"), T(v, 8, "real"))
    assert not torch.equal(T(v, 7, "real"), T(v, 7, "fake_G"))
    assert not torch.equal(T(v, 7, "real"), Augment(ALL, 1.0, seed=6)(v, 7, "real"))


def test_each_rank_draws_its_slice_of_the_global_batch():
    v = images(8)
    whole = Augment(ALL, 1.0, seed=2)(v, 4, "fake_D")
    halves = [
        Augment(ALL, 1.0, seed=2, rank=r, world=2)(v[4 * r : 4 * r + 4], 4, "fake_D")
        for r in (0, 1)
    ]
    assert torch.equal(torch.cat(halves), whole)


def test_gradient_reaches_G_through_T():
    v = images(4).requires_grad_()
    d = augment.draw(("translation", "cutout"), 1.0, 32, 4, (0, 1, 1))
    augment.apply(v, d).sum().backward()
    mask = augment.apply(torch.ones_like(v), d)  # T is linear here: its gradient is its mask
    assert torch.equal(v.grad, (mask != 0).float()) or torch.allclose(v.grad.sum(), mask.sum())

    torch.manual_seed(0)
    model = BEGAN(ModelConfig(n=8, Nh=16, Nz=16))
    opt_G = torch.optim.SGD(model.G.parameters(), lr=0.0)
    T = Augment(ALL, 1.0, seed=0)
    update_G(model, opt_G, model.sample_z(4), T=lambda x: T(x, 0, "fake_G"))
    grads = [p.grad for p in model.G.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_policies_parse_and_bad_ones_are_refused():
    assert parse_policy("translation, cutout") == ("translation", "cutout")
    assert parse_policy("") == parse_policy("none") == ()
    with pytest.raises(ConfigError, match="unknown augmentation blur"):
        tiny_config(augment="translation,blur")
    with pytest.raises(ConfigError, match="augment_p"):
        tiny_config(augment="cutout", augment_p=1.5)
    with pytest.raises(ConfigError, match="augment_p must be a probability"):
        tiny_config(augment="cutout", augment_p="auto")  # measured, did not pay, not offered
    with pytest.raises(ConfigError, match="--heldout"):
        tiny_config(score_every=10)


def test_flags_round_trip_the_new_options():
    args = ["train", "--out", "x", "--data", "shapes", "--augment", "translation,cutout"]
    args += ["--augment-p", "0.5", "--heldout", "0.1", "--score-every", "500"]
    config = resolve_config(build_parser().parse_args(args))
    assert config.train.augment_p == 0.5 and config.data.heldout == 0.1
    again = resolve_config(build_parser().parse_args(["train", "--out", "x", *train_flags(config)]))
    assert again == config
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--augment-p", "often"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "x", "--augment-p", "auto"])


# --------------------------------------------------------------------------- held-out split


def test_heldout_split_is_fixed_disjoint_and_at_least_64():
    train_idx, held = heldout.split(1124, 0.05, seed=0)
    assert len(held) == 64 and len(train_idx) == 1060
    assert not set(train_idx) & set(held)
    assert np.array_equal(heldout.split(1124, 0.05, seed=0)[1], held)
    assert not np.array_equal(heldout.split(1124, 0.05, seed=1)[1], held)
    assert len(heldout.split(10_000, 0.05, seed=0)[1]) == 500
    assert heldout.split(100, 0.0, seed=0)[1].size == 0
    with pytest.raises(ConfigError, match="too few"):
        heldout.split(100, 0.05, seed=0)


def test_batches_never_draw_a_heldout_image():
    data = TensorDataset(n=200)
    train_idx, held = heldout.split(len(data), 0.3, seed=0)
    batches = Batches(heldout.Subset(data, train_idx, "training images"), 16, seed=0)
    held_images = data.x[torch.as_tensor(held)].flatten(1)
    for t in range(3 * len(train_idx) // 16):  # three epochs
        x = batches(t).flatten(1)
        assert not (torch.cdist(x, held_images) < 1e-6).any()


def test_the_trainer_logs_the_heldout_gap_and_never_trains_on_heldout(tmp_path, monkeypatch):
    data = TensorDataset(n=200)
    seen = []
    original = heldout.Subset.batch

    def spy(self, indices):
        if self.description.startswith("training"):
            seen.extend(self.indices[np.asarray(indices)].tolist())
        return original(self, indices)

    monkeypatch.setattr(heldout.Subset, "batch", spy)
    config = with_data(tiny_config(steps=20, heldout_every=10), heldout=0.3)
    records = list(train(config, tmp_path / "r", dataset=data))
    _, held = heldout.split(200, 0.3, seed=0)
    trained_on = set(seen)
    assert trained_on and not trained_on & set(held.tolist())
    gaps = [r for r in records if "heldout_gap" in r]
    assert [r["step"] for r in gaps] == [10, 20]
    assert all(r["heldout_gap"] == pytest.approx(r["L_heldout"] - r["L_train"]) for r in gaps)
    meta = json.loads((tmp_path / "r" / "config.json").read_text())["meta"]
    assert meta["images"] == 200 - 64 and meta["heldout_images"] == 64


# --------------------------------------------------------------------------- the trainer


def test_augmented_resume_is_exact(tmp_path):
    base = tiny_config(
        steps=20, checkpoint_every=10, heldout_every=5, augment="translation,cutout,color"
    )
    full = with_train(with_data(base, heldout=0.3), augment_p=0.5)
    data = TensorDataset(n=200)
    list(train(full, tmp_path / "a", dataset=data))
    list(train(with_train(full, steps=10), tmp_path / "b", dataset=data))
    list(train(full, tmp_path / "b", dataset=data, resume=True))
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    wa, wb = load(a.latest_checkpoint()).state_dict(), load(b.latest_checkpoint()).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["augment_p"] for r in a.read_metrics() if "augment_p" in r] == [0.5] * 4
    keys = ("step", "k_t", "L_x", "L_G", "augment_p", "L_heldout")
    strip = [[{k: r.get(k) for k in keys} for r in run.read_metrics()] for run in (a, b)]
    assert strip[0] == strip[1]


def test_augmentation_changes_what_D_sees_and_not_the_plain_run(tmp_path):
    data = TensorDataset(n=64)
    plain = list(train(tiny_config(steps=10), tmp_path / "a", dataset=data))
    again = list(train(tiny_config(steps=10, augment=""), tmp_path / "b", dataset=data))
    aug = list(train(tiny_config(steps=10, augment="translation"), tmp_path / "c", dataset=data))
    assert plain[-1]["L_x"] == again[-1]["L_x"]  # no augmentation: the run as before
    assert aug[-1]["L_x"] != plain[-1]["L_x"]


def test_best_checkpoint_is_kept_apart_and_exported_by_default(tmp_path):
    data = TensorDataset(n=200)
    config = tiny_config(
        steps=30, checkpoint_every=10, score_every=10, keep_checkpoints=1, heldout=0.3
    )
    records = list(train(config, tmp_path / "r", dataset=data))
    run = RunDir(tmp_path / "r")
    scored = [r for r in records if "score" in r]
    assert [r["step"] for r in scored] == [10, 20, 30]
    assert {r["score_metric"] for r in scored} == {"classifier_fd"}  # the config says fluent-faces
    best = min(scored, key=lambda r: r["score"])
    assert scored[-1]["best_step"] == best["step"]
    assert run.best_checkpoint().name == f"best_step_{best['step']:07d}"
    assert [s for s, _ in run.checkpoints()] == [30]  # keep=1 prunes steps, never the best
    assert locate(run.path)[0] == run.best_checkpoint()
    assert locate(run.path, latest=True)[0] == run.latest_checkpoint()
    out = export(run.path, tmp_path / "exported", evaluate=False)
    assert json.loads((out / "training.json").read_text())["step"] == best["step"]
    state = torch.load(run.latest_checkpoint() / "training_state.pt", weights_only=True)
    assert state["best"]["step"] == best["step"]


def test_run_config_defaults_are_unchanged():
    config = RunConfig()
    assert config.train.augment == "" and config.data.heldout == 0.0
    assert config.train.score_every == 0 and not config.augmentation
